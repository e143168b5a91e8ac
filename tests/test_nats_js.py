"""A second client: nats.js (npm `nats`) against a node, core NATS and mq9 both."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).resolve().parent / "js"


@pytest.fixture(scope="module")
def nats_js() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the nats.js check")
    if not (JS / "node_modules" / "nats").exists():
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund"], cwd=JS, check=True, timeout=300)
    return JS


def test_nats_js_core_and_mq9(node, nats_js):
    out = subprocess.run(["node", "compat.mjs", node.url], cwd=nats_js, capture_output=True, text=True, timeout=60)
    results = json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {}
    assert out.returncode == 0 and results and all(results.values()), (out.stdout, out.stderr)


def test_nats_js_with_users_permissions_and_tls(make_node, nats_js, tmp_path):
    from node.cli.certs import make

    certs = make(str(tmp_path / "certs"), ["localhost", "127.0.0.1"])
    config = tmp_path / "js.toml"
    config.write_text('[authorization]\n[[authorization.users]]\nuser = "alice"\npassword = "a"\n'
                      'permissions.publish = { allow = ["$mq9.AI.>", "_INBOX.>"] }\n')
    node = make_node("jsauth", extra=["--config", str(config), "--tls-cert", certs["server.pem"],
                                      "--tls-key", certs["server-key.pem"]]).start()
    out = subprocess.run(["node", "auth.mjs", f"tls://localhost:{node.port}", certs["ca.pem"]], cwd=nats_js,
                         capture_output=True, text=True, timeout=60)
    results = json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {}
    assert out.returncode == 0 and results and all(results.values()), (out.stdout, out.stderr)
