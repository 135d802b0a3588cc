"""/docs and /redoc are served from the installed package's files, under a CSP."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest


@pytest.mark.parametrize(
    ("path", "asset"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")]
)
def test_docs_pages_load_nothing_from_another_host(client, path, asset) -> None:  # type: ignore[no-untyped-def]
    page = client.get(path)
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/") for s in sources), sources
    assert f"/static/apidocs/{asset}" in sources
    assert client.get(f"/static/apidocs/{asset}").status_code == 200
    assert "fonts.googleapis" not in page.text


def test_docs_csp_allows_only_its_own_inline_script(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/docs")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    (inline,) = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    script_src = next(p for p in policy.split(";") if p.strip().startswith("script-src"))
    assert script_src.split() == ["script-src", "'self'", f"'sha256-{digest}'"]
