"""The README's Python quickstart runs as written."""

import logging
import re
from pathlib import Path

import ddm

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_python_quickstart_runs_as_written(tmp_path, monkeypatch, caplog):
    text = README.read_text()
    block = re.search(r"```python\n(.*?)```", text[text.index("## Python quickstart"):], re.S)
    assert block is not None
    monkeypatch.chdir(tmp_path)
    was = ddm.progress.enabled()
    ddm.progress.set_enabled(False)
    scope: dict = {}
    try:
        with caplog.at_level(logging.WARNING):
            exec(compile(block.group(1), "README quickstart", "exec"), scope)
    finally:
        ddm.progress.set_enabled(was)
    assert scope["attr"].weights.shape[:2] == (20, scope["dm"].groups.num_groups)
    assert len(scope["df"]) == 20 * 5
    assert scope["paper_cfg"].distill.matching != scope["cfg"].distill.matching
    # it builds the configured model, so nothing says the workspace holds another one
    assert not [r for r in caplog.records if "not the one the configuration" in r.getMessage()]
    assert (tmp_path / "runs" / "digits" / "config.json").exists()


def test_fit_says_when_the_model_is_not_the_configured_one(tmp_path, digits, caplog):
    cfg = ddm.presets.tiny(digits)
    dm = ddm.DistilledDatamodel(tmp_path / "ws", cfg)
    with caplog.at_level(logging.WARNING):
        dm.fit(ddm.models.build("convnet", digits, width=cfg.model.width + 4, depth=cfg.model.depth), digits.train,
               until="train")
    said = [r.getMessage() for r in caplog.records if "not the one the configuration" in r.getMessage()]
    assert len(said) == 1 and f"width {cfg.model.width + 4} (the configuration: {cfg.model.width})" in said[0]
    assert "depth" not in said[0]  # only what differs
