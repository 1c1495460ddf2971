"""Backbone weights: the real download code against a local 'Hugging Face' server, then loading what it wrote."""
from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import Dinov2Config, Dinov2Model, DINOv3ViTConfig, DINOv3ViTModel

from unsamv2.cli import main as cli_main
from unsamv2.discovery.features import build_backbone
from unsamv2.resources import BACKBONES, download_backbone


class HubServer:
    """Serves `/<repo>/resolve/main/<file>` from a folder per repo and records the Authorization headers."""

    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos = repos
        self.auth: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.auth.append(self.headers.get("Authorization"))
                for repo, folder in outer.repos.items():
                    prefix = f"/{repo}/resolve/main/"
                    if self.path.startswith(prefix) and (folder / self.path[len(prefix):]).is_file():
                        data = (folder / self.path[len(prefix):]).read_bytes()
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        return
                self.send_error(404)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Iterator[HubServer]:
    torch.manual_seed(0)
    v2 = tmp_path_factory.mktemp("dinov2-base")
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, patch_size=14,
                             image_size=56)).save_pretrained(v2)
    v3 = tmp_path_factory.mktemp("dinov3")
    DINOv3ViTModel(DINOv3ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                                   patch_size=16, image_size=64, num_register_tokens=4)).save_pretrained(v3)
    server = HubServer({BACKBONES["dinov2_vitb14"].repo_id: v2, BACKBONES["dinov3_vitb16"].repo_id: v3})
    yield server
    server.server.shutdown()


def test_public_backbone_downloads_then_loads(hub: HubServer, tmp_path: Path) -> None:
    dest = download_backbone("dinov2_vitb14", tmp_path / "dinov2", endpoint=hub.url)
    assert sorted(p.name for p in dest.iterdir()) == ["config.json", "model.safetensors"]
    features = build_backbone("dinov2_vitb14", weights=str(dest))(np.zeros((56, 84, 3), np.uint8))
    assert features.shape == (4, 6, 32)
    n_requests = len(hub.auth)
    download_backbone("dinov2_vitb14", dest, endpoint=hub.url)  # already complete: no request
    assert len(hub.auth) == n_requests


def test_gated_backbone_needs_a_token_and_sends_it(hub: HubServer, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(PermissionError, match="dinov3-vitb16-pretrain-lvd1689m.*HF_TOKEN"):
        download_backbone("dinov3_vitb16", tmp_path / "v3", endpoint=hub.url)
    monkeypatch.setenv("HF_TOKEN", "secret-token")
    dest = download_backbone("dinov3_vitb16", tmp_path / "v3", endpoint=hub.url)
    assert hub.auth[-1] == "Bearer secret-token"
    assert build_backbone("dinov3_vitb16", weights=str(dest))(np.zeros((32, 48, 3), np.uint8)).shape == (2, 3, 32)


def test_cli_reports_the_gated_backbone_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert cli_main(["download-backbone", "dinov3_vitb16", "--out-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "request access" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ValueError, match="dinov9"):
        download_backbone("dinov9", tmp_path)
