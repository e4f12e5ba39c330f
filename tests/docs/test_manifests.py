"""The Kubernetes manifests under docs/ are valid as written.

- Kubernetes' own kinds (Deployment, ServiceAccount, ...) against the API schemas of
  Kubernetes 1.30, strictly (an unknown field fails): the ``kubernetes-validate`` package,
  which bundles the schemas (no network).
- KEDA's kinds (``keda.sh/*``: ScaledObject, TriggerAuthentication) against KEDA's CRD
  schemas from the npm package ``@kubernetes-models/keda``, which ``make`` installs into
  ``.venv/npm`` (or ``$KEDA_MODELS_DIR``): run by node, ``tests/docs/validate_keda.mjs``.
- The ``QUEUE_CONSUMER_*`` settings in a container's environment are options that
  ``queue-consumer run`` has, with values it accepts; a ScaledObject scales a Deployment
  that is in the docs.

A missing tool skips locally and fails in CI (``CI`` set), like the server tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
KUBERNETES_VERSION = "1.30"
IN_CI = bool(os.environ.get("CI"))

yaml = pytest.importorskip("yaml")


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what}; CI must run the manifest checks, not skip them")
    pytest.skip(what)


def _objects() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((ROOT / "docs").rglob("*.y*ml")):
        for index, document in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if document:
                found.append((f"{path.relative_to(ROOT)}#{index}", document))
    return found


OBJECTS = _objects()
KEDA = [(where, o) for where, o in OBJECTS if str(o.get("apiVersion", "")).startswith("keda.sh/")]
KUBERNETES = [(where, o) for where, o in OBJECTS if (where, o) not in KEDA]


def test_the_docs_have_manifests() -> None:
    kinds = {o["kind"] for _, o in OBJECTS}
    assert {"Deployment", "ServiceAccount", "ScaledObject"} <= kinds, kinds


@pytest.mark.parametrize("where,manifest", KUBERNETES, ids=[w for w, _ in KUBERNETES])
def test_kubernetes_object_is_valid(where: str, manifest: dict[str, Any]) -> None:
    try:
        import kubernetes_validate
    except ModuleNotFoundError:
        _missing("kubernetes-validate is not installed (pip install kubernetes-validate)")
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        # Another operator's CRD (a PodMonitor, say): no schema is bundled for it. Reported.
        pytest.skip(f"{where}: no schema for {manifest['apiVersion']} {manifest['kind']}")
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{where}: {exc.message} at {'/'.join(map(str, exc.path))}")


def _keda_models() -> Path:
    base = Path(os.environ.get("KEDA_MODELS_DIR", ROOT / ".venv" / "npm")) / "node_modules"
    if shutil.which("node") is None:
        _missing("node is not installed")
    if not (base / "@kubernetes-models" / "keda").is_dir():
        _missing(f"@kubernetes-models/keda is not installed in {base} (make keda-schemas)")
    return base


def _validate_keda(objects: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(HERE / "validate_keda.mjs"), str(_keda_models())],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keda_objects_are_valid() -> None:
    assert KEDA, "no KEDA object under docs/"
    result = _validate_keda([o for _, o in KEDA])
    assert result.returncode == 0, f"{result.stdout}{result.stderr}"
    assert result.stdout.count("ok ") == len(KEDA), result.stdout


def test_keda_validation_rejects_bad_objects() -> None:
    """The check can fail: a wrong type, a value outside an enum."""
    scaled = next(o for _, o in KEDA if o["kind"] == "ScaledObject")
    broken = json.loads(json.dumps(scaled))
    broken["spec"]["maxReplicaCount"] = "twenty"
    auth = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": "bad"},
        "spec": {"podIdentity": {"provider": "aws", "identityOwner": "nobody"}},
    }
    result = _validate_keda([broken, auth])
    assert result.returncode == 1, result.stdout
    assert "maxReplicaCount" in result.stdout and "identityOwner" in result.stdout, result.stdout


def _containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    spec = manifest.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("containers", []))


WORKLOADS = [(w, o) for w, o in KUBERNETES if _containers(o)]


@pytest.mark.parametrize("where,manifest", WORKLOADS, ids=[w for w, _ in WORKLOADS])
def test_queue_consumer_settings_are_real_options(where: str, manifest: dict[str, Any]) -> None:
    from queue_consumer.cli._options import ENV_PREFIX, apply_env, build_parser

    for container in _containers(manifest):
        env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        ours = {name: value for name, value in env.items() if name.startswith(ENV_PREFIX)}
        assert ours, f"{where}: no {ENV_PREFIX}* setting in container {container['name']}"
        argv = [*container.get("command", []), *container.get("args", [])]
        if argv and argv[0] == "queue-consumer":
            argv = argv[1:]
        args = build_parser().parse_args(argv or ["run"])
        known = {ENV_PREFIX + option.dest.upper() for option in args._env_options}
        assert set(ours) <= known, f"{where}: unknown settings {sorted(set(ours) - known)}"
        apply_env(args, ours)  # raises UsageError for a value the option refuses


def test_scaled_objects_target_a_documented_deployment() -> None:
    deployments = {o["metadata"]["name"] for _, o in KUBERNETES if o["kind"] == "Deployment"}
    for where, scaled in KEDA:
        if scaled["kind"] == "ScaledObject":
            target = scaled["spec"]["scaleTargetRef"]["name"]
            assert target in deployments, f"{where}: scales {target!r}, not in {deployments}"
