"""The image recipe mirrors face2face's deployment: one install script, port 8383, HeyGem's
folder mounted at /code/data, and the image's settings pointing there."""

from __future__ import annotations

import re
from pathlib import Path

from talkingface.config import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_dockerfile_installs_through_the_one_script_and_serves_on_8383() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    runs = re.findall(r"^RUN (.+)$", dockerfile, re.M)

    assert len(runs) == 1 and runs[0].endswith("/opt/talkingface/src/deploy/install.sh"), runs
    assert re.search(r"^EXPOSE 8383$", dockerfile, re.M)
    assert re.search(r"^VOLUME /code/data$", dockerfile, re.M)
    assert 'CMD ["talkingface", "serve"]' in dockerfile
    assert "TALKINGFACE_CONFIG=/etc/talkingface/talkingface.toml" in dockerfile
    install = (ROOT / "deploy" / "install.sh").read_text(encoding="utf-8")
    assert 'deploy/talkingface.toml" /etc/talkingface/talkingface.toml' in install
    assert 'deploy/app_local.py" /code/app_local.py' in install


def test_compose_mirrors_face2face_port_and_folder() -> None:
    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")

    assert re.search(r'^\s+- "127\.0\.0\.1:8383:8383"$', compose, re.M)
    assert re.search(r"^\s+- ~/heygem_data/face2face:/code/data$", compose, re.M)
    assert re.search(r"^\s+container_name: heygem-gen-video$", compose, re.M)


def test_the_images_settings_serve_heygem_from_code_data() -> None:
    settings = load_settings(ROOT / "deploy" / "talkingface.toml")

    assert (settings.api.host, settings.api.port) == ("0.0.0.0", 8383)
    assert settings.heygem_temp_dir == Path("/code/data/temp")
    assert settings.api.input_roots == [Path("/code/data")]
    assert settings.api.allow_unauthenticated  # as face2face; compose publishes on loopback
