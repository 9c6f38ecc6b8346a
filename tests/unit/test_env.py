"""Container environment, $(VAR) expansion and entrypoint/cmd, with Kubernetes semantics."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from docker_sidecar.env import EnvError, EnvSources, container_env, entrypoint_and_cmd, expand
from docker_sidecar.fields import PodFacts
from interlink_common.wire import ConfigMap, Secret

PREFIX = "spec.containers[0]"


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


FACTS = PodFacts(
    name="web-0", namespace="team-a", uid="1234-abcd",
    labels={"app": "web", "tier": "front"},
    annotations={"owner": "alice", "note": 'say "hi"'},
    node_name="vk-node", service_account="runner", pod_ip="10.0.0.7", host_ip="192.168.1.5",
)

SOURCES = EnvSources(
    config_maps={"app": {"MODE": "prod", "LEVEL": "3"}},
    secrets={"db": {"user": "admin", "password": "s3cr3t"}},
)


def env_of(container: dict[str, Any], sources: EnvSources = SOURCES,
           **kw: Any) -> list[tuple[str, str]]:
    return container_env(container, FACTS, sources, field_prefix=PREFIX, **kw)


def env_dict(container: dict[str, Any], sources: EnvSources = SOURCES,
             **kw: Any) -> dict[str, str]:
    return dict(env_of(container, sources, **kw))


# --- expand ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("$(A)", "alpha"),
    ("x-$(A)-y", "x-alpha-y"),
    ("$(A)$(B)", "alphabeta"),
    ("$(UNKNOWN)", "$(UNKNOWN)"),
    ("pre $(UNKNOWN) $(A)", "pre $(UNKNOWN) alpha"),
    ("$$(A)", "$(A)"),
    ("$$", "$"),
    ("$$$$", "$$"),
    ("$$$(A)", "$alpha"),
    ("a$", "a$"),
    ("$", "$"),
    ("$HOME", "$HOME"),
    ("${A}", "${A}"),
    ("$(A", "$(A"),
    ("$(A$$", "$(A$"),  # scanning resumes after an unterminated "$("
    ("$()", "$()"),
    ("$(EMPTY)", ""),
    ("$(A$(B))", "$(A$(B))"),  # the name runs to the first ")"
    ("$(SPACE NAME)", "value with space"),
    ("no refs at all", "no refs at all"),
    ("", ""),
    ("é$(A)ü$ß", "éalphaü$ß"),
])
def test_expand(text: str, expected: str) -> None:
    env = {"A": "alpha", "B": "beta", "EMPTY": "", "SPACE NAME": "value with space"}
    assert expand(text, env) == expected


def test_expand_does_not_rescan_substituted_values() -> None:
    assert expand("$(A)", {"A": "$(B)", "B": "nope"}) == "$(B)"
    assert expand("$(A)", {"A": "$$"}) == "$$"


# --- EnvSources.from_objects --------------------------------------------------------------------


def test_from_objects_decodes_secret_data_and_overlays_string_data() -> None:
    secret = Secret.model_validate({
        "metadata": {"name": "db"},
        "data": {"password": b64("p@ss\nword"), "user": b64("root"), "json": b64('{"a": 1}')},
        "stringData": {"user": "admin", "extra": "plain"},
    })
    sources = EnvSources.from_objects([], [secret])
    assert sources.secrets == {"db": {"password": "p@ss\nword", "user": "admin",
                                      "json": '{"a": 1}', "extra": "plain"}}
    assert sources.config_maps == {}


def test_from_objects_config_map_data_and_text_binary_data() -> None:
    cm = ConfigMap.model_validate({
        "metadata": {"name": "app"},
        "data": {"MODE": "prod", "raw": "not base64 at all"},
        "binaryData": {"text": b64("hello"), "blob": b64(b"\xff\xfe\x00")},
    })
    sources = EnvSources.from_objects([cm], [])
    # binaryData that is not UTF-8 cannot become an env var; plain data is never base64-decoded.
    assert sources.config_maps == {"app": {"MODE": "prod", "raw": "not base64 at all",
                                           "text": "hello"}}


def test_from_objects_secret_base64_with_line_breaks() -> None:
    encoded = b64("a" * 100)
    wrapped = encoded[:40] + "\n" + encoded[40:]
    secret = Secret.model_validate({"metadata": {"name": "s"}, "data": {"k": wrapped}})
    assert EnvSources.from_objects([], [secret]).secrets["s"]["k"] == "a" * 100


def test_from_objects_rejects_invalid_base64() -> None:
    secret = Secret.model_validate({"metadata": {"name": "s"}, "data": {"k": "not base64!"}})
    with pytest.raises(EnvError, match=r"secret 's' data\['k'\] is not valid base64.*stringData"):
        EnvSources.from_objects([], [secret])


def test_from_objects_end_to_end_with_container_env() -> None:
    secret = Secret.model_validate({"metadata": {"name": "db"}, "data": {"pw": b64("hunter2")}})
    sources = EnvSources.from_objects([], [secret])
    ref = {"secretKeyRef": {"name": "db", "key": "pw"}}
    container = {"env": [{"name": "PW", "valueFrom": ref}]}
    assert env_of(container, sources) == [("PW", "hunter2")]


# --- literal values ---------------------------------------------------------------------------


TRICKY = [
    '{"key": "value", "list": [1, 2]}',
    "it's \"quoted\"",
    "line1\nline2\n",
    "$HOME and ${PATH}",
    "`rm -rf /` $(echo no)",
    "  spaces around  ",
    "a=b=c",
    "tab\there; semi; && || | > <",
    "ünïcødé ✓",
]


def test_tricky_values_are_passed_verbatim() -> None:
    container = {"env": [{"name": f"V{i}", "value": v} for i, v in enumerate(TRICKY)]}
    assert env_of(container) == [(f"V{i}", v) for i, v in enumerate(TRICKY)]


def test_no_env_gives_empty_list() -> None:
    assert env_of({"name": "c"}) == []
    assert env_of({"name": "c", "env": None, "envFrom": None}) == []


def test_entry_without_value_is_empty_string() -> None:
    assert env_of({"env": [{"name": "A"}, {"name": "B", "value": ""}]}) == [("A", ""), ("B", "")]


def test_expansion_refers_only_to_earlier_variables() -> None:
    container = {"env": [
        {"name": "A", "value": "a"},
        {"name": "B", "value": "$(A)-$(C)"},  # C is defined later: left as written
        {"name": "C", "value": "c"},
        {"name": "D", "value": "$(A)$(B)$(C)"},
    ]}
    assert env_dict(container) == {"A": "a", "B": "a-$(C)", "C": "c", "D": "aa-$(C)c"}


def test_expansion_escape_and_unknown() -> None:
    container = {"env": [
        {"name": "A", "value": "a"},
        {"name": "ESC", "value": "$$(A)"},
        {"name": "UNK", "value": "$(NOPE)"},
        {"name": "SELF", "value": "$(SELF)"},
    ]}
    assert env_dict(container) == {"A": "a", "ESC": "$(A)", "UNK": "$(NOPE)", "SELF": "$(SELF)"}


def test_expansion_sees_env_from_and_value_from_results() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "app"}}],
        "env": [
            {"name": "USER", "valueFrom": {"secretKeyRef": {"name": "db", "key": "user"}}},
            {"name": "URL", "value": "db://$(USER)@host/$(MODE)"},
        ],
    }
    assert env_dict(container)["URL"] == "db://admin@host/prod"


def test_value_from_results_are_not_expanded() -> None:
    sources = EnvSources(config_maps={"c": {"k": "$(A) $$"}}, secrets={})
    container = {"env": [
        {"name": "A", "value": "a"},
        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
    ]}
    assert env_dict(container, sources)["B"] == "$(A) $$"


def test_duplicate_names_later_wins_at_first_position() -> None:
    container = {"env": [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"},
        {"name": "A", "value": "$(A)+3"},  # sees the earlier A
    ]}
    assert env_of(container) == [("A", "1+3"), ("B", "2")]


def test_env_overrides_env_from_and_keeps_its_position() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "app"}}],
        "env": [{"name": "X", "value": "x"}, {"name": "MODE", "value": "dev"}],
    }
    assert env_of(container) == [("LEVEL", "3"), ("MODE", "dev"), ("X", "x")]


@pytest.mark.parametrize("entry, message", [
    ({"value": "x"}, r"spec\.containers\[0\]\.env\[0\]\.name: required"),
    ({"name": "", "value": "x"}, r"env\[0\]\.name: required"),
    ({"name": "A=B", "value": "x"}, r"env\[0\]\.name: 'A=B' contains '='"),
    ({"name": "A", "value": 5}, r"env\[0\]\.value: must be a string.*quote it"),
])
def test_invalid_entries(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(EnvError, match=message):
        env_of({"env": [entry]})


# --- envFrom ----------------------------------------------------------------------------------


def test_env_from_config_map_and_secret_with_prefix() -> None:
    container = {"envFrom": [
        {"configMapRef": {"name": "app"}, "prefix": "CFG_"},
        {"secretRef": {"name": "db"}},
    ]}
    assert env_dict(container) == {"CFG_MODE": "prod", "CFG_LEVEL": "3",
                                   "user": "admin", "password": "s3cr3t"}


def test_env_from_later_source_wins() -> None:
    sources = EnvSources(config_maps={"a": {"K": "from-a", "A": "1"}, "b": {"K": "from-b"}},
                         secrets={})
    container = {"envFrom": [{"configMapRef": {"name": "a"}}, {"configMapRef": {"name": "b"}}]}
    assert env_dict(container, sources) == {"K": "from-b", "A": "1"}


def test_env_from_skips_invalid_names() -> None:
    sources = EnvSources(config_maps={"c": {
        "GOOD": "1", "also.good-name_2": "2", "1BAD": "3", "bad key": "4",
        "bad=key": "5", "ok\n": "6", "": "7",
    }}, secrets={})
    assert env_dict({"envFrom": [{"configMapRef": {"name": "c"}}]}, sources) == {
        "GOOD": "1", "also.good-name_2": "2"}


def test_env_from_prefix_can_make_a_key_valid_or_invalid() -> None:
    sources = EnvSources(config_maps={"c": {"1ST": "a", "X": "b"}}, secrets={})
    assert env_dict({"envFrom": [{"configMapRef": {"name": "c"}, "prefix": "P_"}]}, sources) == {
        "P_1ST": "a", "P_X": "b"}
    assert env_dict({"envFrom": [{"configMapRef": {"name": "c"}, "prefix": "9"}]}, sources) == {}


def test_env_from_optional_missing_objects_are_skipped() -> None:
    container = {"envFrom": [
        {"configMapRef": {"name": "absent", "optional": True}},
        {"secretRef": {"name": "absent", "optional": True}},
        {"configMapRef": {"name": "app"}},
    ]}
    assert env_dict(container) == {"MODE": "prod", "LEVEL": "3"}


@pytest.mark.parametrize("ref, message", [
    ({"configMapRef": {"name": "absent"}},
     r"^spec\.containers\[0\]\.envFrom\[1\]\.configMapRef: configmap 'absent' was not sent"
     r".*optional: true$"),
    ({"secretRef": {"name": "absent", "optional": False}},
     r"^spec\.containers\[0\]\.envFrom\[1\]\.secretRef: secret 'absent' was not sent"
     r".*optional: true$"),
    ({"prefix": "X_"}, r"^spec\.containers\[0\]\.envFrom\[1\]: set configMapRef or secretRef$"),
])
def test_env_from_missing_required_objects(ref: dict[str, Any], message: str) -> None:
    container = {"envFrom": [{"configMapRef": {"name": "app"}}, ref]}
    with pytest.raises(EnvError, match=message):
        env_of(container)


def test_env_from_present_but_empty_object() -> None:
    sources = EnvSources(config_maps={"empty": {}}, secrets={})
    assert env_of({"envFrom": [{"configMapRef": {"name": "empty"}}]}, sources) == []


# --- configMapKeyRef / secretKeyRef -------------------------------------------------------------


def test_key_refs_resolve() -> None:
    container = {"env": [
        {"name": "M", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "MODE"}}},
        {"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
    ]}
    assert env_of(container) == [("M", "prod"), ("P", "s3cr3t")]


@pytest.mark.parametrize("kind, name, key", [
    ("configMapKeyRef", "absent", "k"),
    ("configMapKeyRef", "app", "absent"),
    ("secretKeyRef", "absent", "k"),
    ("secretKeyRef", "db", "absent"),
])
def test_optional_missing_key_ref_leaves_variable_unset(kind: str, name: str, key: str) -> None:
    container = {"env": [
        {"name": "BEFORE", "value": "b"},
        {"name": "OPT", "valueFrom": {kind: {"name": name, "key": key, "optional": True}}},
        {"name": "AFTER", "value": "$(OPT)"},
    ]}
    # Unset, not empty: a later reference stays unexpanded.
    assert env_of(container) == [("BEFORE", "b"), ("AFTER", "$(OPT)")]


def test_optional_missing_key_ref_keeps_earlier_definition() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "app"}}],
        "env": [{"name": "MODE", "valueFrom": {"secretKeyRef": {
            "name": "db", "key": "absent", "optional": True}}}],
    }
    assert env_dict(container)["MODE"] == "prod"


@pytest.mark.parametrize("kind, name, key, message", [
    ("secretKeyRef", "db", "pw",
     "spec.containers[0].env[2].valueFrom.secretKeyRef: secret 'db' has no key 'pw'; "
     "add the key or set optional: true"),
    ("configMapKeyRef", "app", "nope",
     "spec.containers[0].env[2].valueFrom.configMapKeyRef: configmap 'app' has no key 'nope'; "
     "add the key or set optional: true"),
    ("secretKeyRef", "vault", "pw",
     "spec.containers[0].env[2].valueFrom.secretKeyRef: secret 'vault' was not sent with the "
     "pod; create it in the pod's namespace or set optional: true"),
    ("configMapKeyRef", "settings", "x",
     "spec.containers[0].env[2].valueFrom.configMapKeyRef: configmap 'settings' was not sent "
     "with the pod; create it in the pod's namespace or set optional: true"),
])
def test_required_missing_key_ref_raises(kind: str, name: str, key: str, message: str) -> None:
    container = {"env": [
        {"name": "A", "value": "a"},
        {"name": "B", "value": "b"},
        {"name": "C", "valueFrom": {kind: {"name": name, "key": key, "optional": False}}},
    ]}
    with pytest.raises(EnvError) as info:
        env_of(container)
    assert str(info.value) == message


def test_field_prefix_is_used_verbatim() -> None:
    container = {"env": [{"name": "C", "valueFrom": {"secretKeyRef": {"name": "db", "key": "x"}}}]}
    with pytest.raises(EnvError, match=r"^spec\.initContainers\[3\]\.env\[0\]\.valueFrom"):
        container_env(container, FACTS, SOURCES, field_prefix="spec.initContainers[3]")


def test_unsupported_value_from_source() -> None:
    container = {"env": [{"name": "F", "valueFrom": {"fileKeyRef": {"path": "x", "key": "k"}}}]}
    with pytest.raises(EnvError, match=r"env\[0\]\.valueFrom: unsupported source \['fileKeyRef'\]"):
        env_of(container)


def test_literal_value_wins_over_value_from() -> None:
    container = {"env": [{"name": "A", "value": "lit",
                          "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]}
    assert env_of(container) == [("A", "lit")]


# --- fieldRef ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path, expected", [
    ("metadata.name", "web-0"),
    ("metadata.namespace", "team-a"),
    ("metadata.uid", "1234-abcd"),
    ("metadata.labels['app']", "web"),
    ("metadata.labels['missing']", ""),
    ("metadata.annotations['owner']", "alice"),
    ("metadata.labels", 'app="web"\ntier="front"'),
    ("metadata.annotations", 'note="say \\"hi\\""\nowner="alice"'),
    ("spec.nodeName", "vk-node"),
    ("spec.serviceAccountName", "runner"),
    ("status.podIP", "10.0.0.7"),
    ("status.hostIP", "192.168.1.5"),
])
def test_field_ref(path: str, expected: str) -> None:
    container = {"env": [{"name": "F", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                                   "fieldPath": path}}}]}
    assert env_of(container) == [("F", expected)]


def test_field_ref_unsupported_path() -> None:
    container = {"env": [{"name": "F", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]}
    with pytest.raises(EnvError, match=r"^spec\.containers\[0\]\.env\[0\]\.valueFrom\.fieldRef: "
                                       r"fieldPath 'spec\.bogus' is not supported"):
        env_of(container)


# --- resourceFieldRef -------------------------------------------------------------------------


RESOURCES = {"limits": {"cpu": "500m", "memory": "256Mi"},
             "requests": {"cpu": "500m", "memory": "100M"}}


@pytest.mark.parametrize("resource, divisor, expected", [
    ("limits.cpu", None, "1"),           # 0.5 core rounds up
    ("limits.cpu", "1m", "500"),
    ("requests.cpu", "1m", "500"),
    ("requests.cpu", "1", "1"),
    ("limits.memory", None, str(256 * 2**20)),
    ("limits.memory", "1Mi", "256"),
    ("limits.memory", "1Gi", "1"),       # rounds up
    ("requests.memory", "1M", "100"),
    ("requests.memory", "1Mi", "96"),    # 100e6 / 2**20 = 95.37 -> 96
])
def test_resource_field_ref(resource: str, divisor: str | None, expected: str) -> None:
    ref: dict[str, Any] = {"resource": resource}
    if divisor is not None:
        ref["divisor"] = divisor
    container = {"name": "app", "resources": RESOURCES,
                 "env": [{"name": "R", "valueFrom": {"resourceFieldRef": ref}}]}
    assert env_of(container) == [("R", expected)]


def test_resource_field_ref_unset_limit_falls_back_to_node() -> None:
    container = {"name": "app", "env": [
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                           "divisor": "1Mi"}}},
    ]}
    assert env_of(container, node_cpu=8, node_memory=4 * 2**30) == [("CPU", "8"), ("MEM", "4096")]


def test_resource_field_ref_container_name_matching_own_is_accepted() -> None:
    container = {"name": "app", "resources": RESOURCES, "env": [
        {"name": "R", "valueFrom": {"resourceFieldRef": {"containerName": "app",
                                                         "resource": "requests.cpu",
                                                         "divisor": "1m"}}}]}
    assert env_of(container) == [("R", "500")]


def test_resource_field_ref_other_container_is_rejected() -> None:
    container = {"name": "app", "resources": RESOURCES, "env": [
        {"name": "R", "valueFrom": {"resourceFieldRef": {"containerName": "sidecar",
                                                         "resource": "limits.cpu"}}}]}
    with pytest.raises(EnvError, match=r"env\[0\]\.valueFrom\.resourceFieldRef\.containerName: "
                                       r"'sidecar' is another container.*'app'"):
        env_of(container)


@pytest.mark.parametrize("ref, message", [
    ({"resource": "limits.gpu"}, r"resource 'limits\.gpu' is not supported"),
    ({"resource": "limits.cpu", "divisor": "lots"}, r"not a Kubernetes quantity"),
])
def test_resource_field_ref_errors_name_the_path(ref: dict[str, Any], message: str) -> None:
    container = {"name": "app", "env": [{"name": "R", "valueFrom": {"resourceFieldRef": ref}}]}
    with pytest.raises(EnvError, match=r"^spec\.containers\[0\]\.env\[0\]\.valueFrom\."
                                       r"resourceFieldRef: .*" + message):
        env_of(container)


# --- entrypoint and cmd -----------------------------------------------------------------------


ENV = {"GREETING": "hello world", "N": "3"}


@pytest.mark.parametrize("container, expected", [
    ({}, (None, None)),
    ({"command": None, "args": None}, (None, None)),
    ({"command": [], "args": []}, (None, None)),
    ({"command": ["/bin/run"]}, (["/bin/run"], [])),
    ({"command": ["/bin/run"], "args": []}, (["/bin/run"], [])),
    ({"command": ["/bin/run", "-v"], "args": ["a", "b"]}, (["/bin/run", "-v"], ["a", "b"])),
    ({"args": ["a", "b"]}, (None, ["a", "b"])),
    ({"command": [], "args": ["a"]}, (None, ["a"])),
])
def test_entrypoint_and_cmd_matrix(container: dict[str, Any],
                                   expected: tuple[list[str] | None, list[str] | None]) -> None:
    assert entrypoint_and_cmd(container, ENV) == expected


def test_entrypoint_and_cmd_expand_references() -> None:
    container = {"command": ["echo", "$(GREETING)"],
                 "args": ["-n", "$(N)", "$(MISSING)", "$$(N)", "$HOME"]}
    assert entrypoint_and_cmd(container, ENV) == (
        ["echo", "hello world"], ["-n", "3", "$(MISSING)", "$(N)", "$HOME"])


def test_entrypoint_and_cmd_keep_shell_text_verbatim() -> None:
    script = 'for i in 1 2; do echo "$i" `date` \'$(N)\'; done\n'
    container = {"command": ["sh", "-c"], "args": [script]}
    entry, cmd = entrypoint_and_cmd(container, ENV)
    assert entry == ["sh", "-c"]
    # Only $(N) is expanded, even inside single quotes; $i and backticks are left to the shell.
    assert cmd == ['for i in 1 2; do echo "$i" `date` \'3\'; done\n']


def test_entrypoint_and_cmd_use_full_environment() -> None:
    # Unlike env values, command and args see every variable, including later-defined ones.
    container = {"env": [{"name": "A", "value": "$(B)"}, {"name": "B", "value": "b"}],
                 "command": ["$(A)", "$(B)"]}
    env = dict(env_of(container))
    assert entrypoint_and_cmd(container, env) == (["$(B)", "b"], [])


def test_entrypoint_and_cmd_reject_non_strings() -> None:
    with pytest.raises(EnvError, match=r"args\[1\]: must be a string"):
        entrypoint_and_cmd({"args": ["a", 5]}, ENV)
    with pytest.raises(EnvError, match=r"command\[0\]: must be a string"):
        entrypoint_and_cmd({"command": [None]}, ENV)
