"""`ssm data prepare sc35` downloads the release archive (here from a local URL in its official
layout: words and lists at the archive's top level), checks its checksum, unpacks it where the
loader looks, and builds the cache."""
from __future__ import annotations

import hashlib
import tarfile

from typer.testing import CliRunner

from ssm_cli.data import speech_commands
from ssm_cli.cli.data_cmd import app
from tests.data.fixtures import write_speech_commands


def test_prepare_sc35_downloads_and_lays_out_the_release(tmp_path, monkeypatch):
    src = write_speech_commands(tmp_path / "src", words=speech_commands.WORDS["v0.02"], n_per_word=5)
    release = src / "speech_commands" / "speech_commands_v0.02"
    archive = tmp_path / "speech_commands_v0.02.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for p in sorted(release.iterdir()):
            tar.add(p, arcname=f"./{p.name}")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(speech_commands.URLS, "v0.02", (archive.as_uri(), sha))
    data = tmp_path / "data"
    r = CliRunner().invoke(app, ["prepare", "sc35", "--data-dir", str(data)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    target = data / "speech_commands" / "speech_commands_v0.02"
    assert (target / "validation_list.txt").exists() and (target / "yes").is_dir()
    assert not (data / "speech_commands" / "speech_commands_v0.02.tar.gz").exists()  # dropped once unpacked
    assert "ready" in r.output
    assert CliRunner().invoke(app, ["present", "sc35", "--data-dir", str(data)]).exit_code == 0
