"""The package's promises match what CI tests: its ansible-core range is the collection's requires_ansible, and
AWS support (boto3) is the extra `erlmcp-dr[aws]`, with one clear sentence where a runbook needs it and it is
missing (Route 53, the S3 store); boto3's absence is simulated in a subprocess, which imports nothing else of it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def requirement(requirements: list[str], name: str) -> SpecifierSet:
    (found,) = [req for req in requirements if re.match(rf"{re.escape(name)}\s*[<>=!~\[]", req)]
    return SpecifierSet(re.sub(r"^[A-Za-z0-9_.-]+(\[[^]]*\])?", "", found).strip())


def requires_ansible() -> SpecifierSet:
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    # requires_ansible spells versions in full (2.22.0), pip's range does not (2.22): compare bound by bound.
    return SpecifierSet(runtime["requires_ansible"])


def same_range(left: SpecifierSet, right: SpecifierSet) -> bool:
    def bounds(spec: SpecifierSet) -> set[tuple[str, tuple[int, ...]]]:
        return {(s.operator, tuple(int(p) for p in s.version.split("."))[:2]) for s in spec}

    return bounds(left) == bounds(right)


def test_the_packages_ansible_core_range_is_the_collections_requires_ansible():
    wanted = requires_ansible()
    dependency = requirement(PYPROJECT["project"]["dependencies"], "ansible-core")
    build = requirement(PYPROJECT["build-system"]["requires"], "ansible-core")
    assert same_range(dependency, wanted), f"pyproject {dependency} against requires_ansible {wanted}"
    assert same_range(build, wanted), f"build-system {build} against requires_ansible {wanted}"
    for tested in ("2.19.0", "2.21.99"):  # the floor CI runs the suite on, and the newest series' sanity
        assert dependency.contains(tested) and wanted.contains(tested)


def test_boto3_is_the_aws_extra_not_a_dependency():
    names = [re.split(r"[<>=!~\[ ]", req)[0] for req in PYPROJECT["project"]["dependencies"]]
    assert "boto3" not in names
    assert requirement(PYPROJECT["project"]["optional-dependencies"]["aws"], "boto3")


# A meta path finder refuses boto3 and botocore, as on a host where they were never installed.
NO_BOTO3 = """
import sys
class NoBoto3:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("boto3", "botocore"):
            raise ModuleNotFoundError("No module named %r" % name, name=name)
sys.meta_path.insert(0, NoBoto3())
from erlmcp_dr.paths import ensure_collection_importable
ensure_collection_importable()
"""

CALLS = {
    "route53": """
from ansible_collections.erlmcp.dr.plugins.module_utils._dns import base as _dns
from ansible_collections.erlmcp.dr.plugins.module_utils._dns import route53 as _dns_route53
try:
    _dns_route53.client({"aws_region": "eu-west-1"})
except _dns.DnsError as exc:
    print(exc)
""",
    "s3": """
from ansible_collections.erlmcp.dr.plugins.module_utils._redis.client import RedisError
from ansible_collections.erlmcp.dr.plugins.module_utils._redis.store import S3Store
try:
    S3Store({"s3_bucket": "backups"}).client()
except RedisError as exc:
    print(exc)
""",
}


@pytest.mark.parametrize("path, option", [("route53", "provider=route53"), ("s3", "an S3 store (s3_bucket)")])
def test_without_boto3_the_aws_paths_name_the_extra(path, option):
    done = subprocess.run([sys.executable, "-c", NO_BOTO3 + CALLS[path]], capture_output=True, text=True,
                          timeout=120, check=True)
    message = done.stdout.strip()
    assert message.startswith(f"the Python library boto3 is required for {option} and is not installed"), message
    assert "pip install 'erlmcp-dr[aws]'" in message and "No module named 'boto3'" in message, message
