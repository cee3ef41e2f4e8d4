"""The demo report's parts: its targets, the loss curve it reads, and its Markdown."""

from __future__ import annotations

import json
from pathlib import Path

from videopoet.eval.demo_report import check_targets, format_markdown, loss_curve


def test_targets_need_accuracy_speed_and_maskgit_no_worse() -> None:
    good = {"ar": {"seen": 0.92, "heldout": 0.0}, "maskgit": {"seen": 0.96, "heldout": 0.6}}
    assert all(check_targets(good, 12.0).values()) and len(check_targets(good, 12.0)) == 4
    slow = check_targets(good, 8.0)
    assert slow["maskgit_at_least_10x_faster"] is False and slow["maskgit_seen_accuracy_at_least_90%"]
    worse = check_targets({"ar": {"seen": 0.96}, "maskgit": {"seen": 0.92}}, 12.0)
    assert worse["maskgit_accuracy_not_lower"] is False
    missing = check_targets({"maskgit": {"seen": None}}, None)  # one sampler: no speed-up to judge
    assert missing == {"maskgit_seen_accuracy_at_least_90%": False}


def test_loss_curve_reads_the_history(tmp_path: Path) -> None:
    rows = [{"step": 1, "loss": 5.0, "tokens_per_s": 100.0}, {"step": 2, "loss": 4.0}, {"step": 2, "val_loss": 4.5}]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    curve = loss_curve(tmp_path)
    assert curve == {"train": [[1, 5.0], [2, 4.0]], "val": [[2, 4.5]], "tokens_per_s": [[1, 100.0]]}
    assert loss_curve(tmp_path / "missing") == {"train": [], "val": [], "tokens_per_s": []}


def test_markdown_leads_with_the_accuracy_table_and_marks_missed_targets() -> None:
    report = {
        "prompt_accuracy": {"ar": {"seen": 0.5, "heldout": None}},
        "seconds_per_clip": {"ar": 1.25},
        "maskgit_speedup": None,
        "video_to_audio_pitch_accuracy": 1.0,
        "audio_to_video_shape_accuracy": None,
        "targets": {"ar_seen_accuracy_at_least_90%": False},
        "groups": {"ar/seen": {"samples": 2, "accuracy": {"all": 0.5, "color": 1.0, "shape": 0.5, "direction": 1.0, "pitch": None}}},
        "tokenizers": {}, "tokenizer_round_trip": None, "llm": {"steps": 3, "loss_curve": {"train": [], "val": []}},
        "stage_seconds": {"data": 1.0}, "total_seconds": 1.0, "contact_sheet": {"file": "contact_sheet.png", "rows": []},
    }  # fmt: skip
    text = format_markdown(report)
    assert text.splitlines()[0] == "# videopoet demo report"
    assert "| ar | 50% | - | 1.25 |" in text and "ar_seen_accuracy_at_least_90%: NOT met" in text
    assert "| ar/seen | 2 | 50% | 100% | 50% | 100% | - |" in text
