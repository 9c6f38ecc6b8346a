"""Conformance with upstream's virtual-kubelet test set (interlink-hq/vk-test-set).

Upstream keeps its tests as Jinja/YAML templates that a pytest plugin applies to a real cluster
and judges by pod phase and log regexes. Here each template is re-expressed as a small Python
module (``cases/``) built from this package's own helpers, and a runner (``runner.py``) plays
the parts that a cluster would play:

- ``cluster.py``: the kube-apiserver (defaults, the service-account admission that adds the
  ``kube-api-access-*`` projected volume, Secrets' ``stringData``) and the Job controller;
- ``vk.py``: the virtual kubelet, current (0.5+) or legacy (0.2.x), speaking to the real
  ``interlink-api`` over HTTP exactly as the Go VK does;
- ``runner.py``: upstream's validation loop (``check_pods``/``check_logs``), over the real API
  server, the real ``docker-sidecar`` and the real Docker Engine.

Public images are mapped to the images ``tests/images/build.sh`` builds (``images.py``). The
status of every upstream template (passes, excluded and why, changed and why) and the bugs
found in upstream's own suite are in ``docs/CONFORMANCE.md``.
"""
