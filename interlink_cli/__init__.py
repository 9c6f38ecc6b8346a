"""``interlink``: the operator's command line for an interLink API server and its sidecar."""
