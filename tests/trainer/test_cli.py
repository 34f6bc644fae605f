import json

import pytest

from trainer.cli import main


@pytest.mark.parametrize("command", ["train", "features", "search", "evaluate", "export", "predict", "mine", "review-floor"])
def test_each_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "/" in capsys.readouterr().out  # Chinese / English help text


def test_a_missing_data_folder_is_one_clear_message_not_a_traceback(tmp_path, capsys):
    config = tmp_path / "missing.yaml"
    config.write_text(f"data: [{str(tmp_path / 'not-here')!r}]\npositive_label: nailong\n")
    assert main(["train", "--config", str(config), f"checkpoint_dir={tmp_path / 'checkpoints'}"]) == 2
    error = capsys.readouterr().err
    assert "找不到数据目录" in error and "not-here" in error and "mine --rebuild" in error
    assert "Traceback" not in error


def test_predict_prints_a_verdict_per_file_and_flags_bad_files(trained, tmp_path, capsys, image_root):
    _, _, onnx_path = trained
    bad = tmp_path / "not-an-image.jpg"
    bad.write_text("<html>oops</html>")
    code = main(["predict", "--model", str(onnx_path), str(image_root / "nailong"), str(bad)])
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [line.split("\t") for line in lines[2:]]
    assert code == 1
    assert len(rows) == len(list((image_root / "nailong").iterdir())) + 1
    assert all(row[0] in ("nailong", "other") and 0.0 <= float(row[1]) <= 1.0 for row in rows[:-1])
    assert rows[-1][0] == "error" and "不是图片" in rows[-1][3]


def test_evaluate_writes_its_report(trained, tmp_path, image_root):
    _, best, onnx_path = trained
    for model in (onnx_path, best):
        out = tmp_path / model.suffix.strip(".")
        assert main(["evaluate", "--model", str(model), "--data", str(image_root), "--out", str(out)]) == 0
        report = json.loads((out / "report.json").read_text())
        assert sum(map(sum, report["confusion_matrix"])) == report["images"] == 28
        assert set(report["per_class"]) == {"nailong", "other"}
        assert len(report["threshold_table"]) >= 8
        assert (out / "confusion.png").stat().st_size > 0 and (out / "pr_curve.png").stat().st_size > 0
        assert "混淆矩阵" in (out / "report.md").read_text()


def test_evaluate_on_the_validation_split_of_a_config(trained, tmp_path):
    import yaml

    cfg, _, onnx_path = trained
    config = tmp_path / "cfg.yaml"
    # A subset is reported apart: here the animated images, by their file names.
    config.write_text(yaml.safe_dump({**cfg.to_dict(), "report_subsets": {"动图 / animated": ["-anim.gif"]}}))
    out = tmp_path / "val"
    assert main(["evaluate", "--model", str(onnx_path), "--val-of", str(config), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    from trainer.data import prepare_data

    val_sources = prepare_data(cfg).val_sources
    assert report["images"] == len(val_sources)
    (origin,) = report["per_source"]
    assert report["per_source"][origin]["images"] == len(val_sources)
    animated = report["subsets"]["动图 / animated"]
    assert animated["images"] == sum(s.endswith("-anim.gif") for s in val_sources)
    assert animated["false_positives"] <= animated["images"] - animated["nailong"]
    assert "子集 / Subsets" in (out / "report.md").read_text()
