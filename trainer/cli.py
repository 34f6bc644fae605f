"""Command line: ``python -m trainer train|search|evaluate|export|predict`` in a checkout; installed from the
wheel, the package is ``nailong_trainer`` (``nailong-trainer``, ``python -m nailong_trainer``)."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys

DESCRIPTION = """奶龙识别模型训练工具 / nailong model trainer

  train     训练一次 / one training run (resumes from checkpoint_dir/last.pt)
  features  冻结预训练特征 + 线性分类头（CPU 上几秒）/ frozen pretrained features + a linear head, in seconds
  search    optuna 超参数搜索 / hyperparameter search
  evaluate  评估模型并生成报告 / evaluate a model, write a report
  export    导出插件使用的 ONNX 模型 / export the ONNX model the plugin loads
  predict   对图片给出判断 / classify image files
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nailong-trainer", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="训练 / train one run",
                                description="训练一次；中断后再次运行同一命令即可续训。/ Train once; run the same command again to resume.")
    train.add_argument("--config", help="YAML 配置文件 / config file (see configs/shipped.yaml)")
    train.add_argument("overrides", nargs="*", metavar="key=value",
                       help="覆盖配置项 / override config keys, e.g. max_steps=100 augment.hflip=0")

    features = commands.add_parser(
        "features", help="冻结特征 + 线性头 / frozen features + linear head",
        description="缓存预训练主干的特征，拟合线性分类头，写出 checkpoint_dir/best.pt（可导出、可作教师、可作微调起点）。/ "
                    "Cache a pretrained backbone's features, fit a linear head, write checkpoint_dir/best.pt "
                    "(export it, use it as a teacher, or fine-tune from it with init_checkpoint).")
    features.add_argument("--config", required=True, help="YAML 配置文件 / config file (see configs/teacher-lite0.yaml)")
    features.add_argument("--l2", type=float, default=1e-3, help="线性头的 L2 正则 / L2 penalty of the head")
    features.add_argument("overrides", nargs="*", metavar="key=value", help="覆盖配置项 / override config keys")

    search = commands.add_parser("search", help="超参数搜索 / optuna search",
                                 description="optuna 搜索，目标为验证集奶龙 F1。/ optuna search maximising validation nailong F1.")
    search.add_argument("--config", required=True, help="基础配置 / base config")
    search.add_argument("--space", required=True, help="搜索空间 YAML / search space (see configs/space.yaml)")
    search.add_argument("--trials", type=int, required=True, help="本次运行的试验数 / trials to run now")
    search.add_argument("--storage", help="optuna 存储 URL，默认 SQLite 文件 / storage URL (default: sqlite file in the output dir)")
    search.add_argument("--study", default="nailong", help="study 名称 / study name")
    search.add_argument("--out", default="runs/search", help="输出目录 / output directory")
    search.add_argument("overrides", nargs="*", metavar="key=value", help="覆盖基础配置 / override base config keys")

    evaluate = commands.add_parser("evaluate", help="评估 / evaluate",
                                   description="混淆矩阵、各类 P/R/F1、PR 曲线、阈值表。/ Confusion matrix, per-class P/R/F1, PR curve, threshold table.")
    evaluate.add_argument("--model", required=True, help="model.onnx 或 / or checkpoint .pt")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", nargs="+", help="ImageFolder 目录 / folders (<label>/*.jpg)")
    source.add_argument("--val-of", metavar="CONFIG", help="训练配置的验证集（按近重复分组）/ the grouped validation split of a training config")
    evaluate.add_argument("--out", default="runs/evaluate", help="报告目录 / report directory")
    evaluate.add_argument("--threshold", type=float, help="判定阈值，默认取模型推荐值 / threshold (default: the model's)")

    export = commands.add_parser("export", help="导出 ONNX / export ONNX",
                                 description="导出 ONNX（动态 batch，带元数据），并当场核对与 PyTorch 一致。/ Export ONNX with metadata and check it against PyTorch.")
    export.add_argument("--checkpoint", required=True, help="best.pt")
    export.add_argument("--out", required=True, help="model.onnx")
    export.add_argument("--opset", type=int, default=20, help="ONNX opset (≥17; 20 fuses GELU)")
    export.add_argument("--precision-target", type=float, help="推荐阈值的精确率目标 / precision the recommended threshold aims for (default: from the config, 0.99)")
    export.add_argument("--int8", action="store_true", help="另存 int8 动态量化版本（F1 下降 ≤0.005 才保留）/ also try a dynamic int8 copy")
    export.add_argument("--version", help="模型版本号 / model version (default: date)")

    predict = commands.add_parser("predict", help="预测 / classify images",
                                  description="用与插件相同的解码和预处理给出判断。/ Classify with the plugin's own decoding and preprocessing.")
    predict.add_argument("--model", required=True, help="model.onnx")
    predict.add_argument("paths", nargs="+", metavar="IMAGE|DIR")
    predict.add_argument("--threshold", type=float, help="判定阈值 / threshold (default: the model's)")
    return parser


# What the `train` extra brings that every command needs; the plugin's runtime has none of them.
TRAIN_MODULES = ("torch", "timm", "yaml")
INSTALL_HINT = (
    "训练工具需要 train 依赖，请安装：pip install 'nailong-bot[train]' / "
    "the trainer needs the train extra: pip install 'nailong-bot[train]'"
)


def missing_train_modules() -> list[str]:
    return [name for name in TRAIN_MODULES if importlib.util.find_spec(name) is None]


def main(argv: list[str] | None = None) -> int:
    if missing := missing_train_modules():
        print(f"{INSTALL_HINT} (missing: {', '.join(missing)})", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.command == "train":
        from .config import load_config
        from .loop import train

        try:
            train(load_config(args.config, args.overrides))
        except KeyboardInterrupt:
            return 130
    elif args.command == "features":
        from .config import load_config
        from .features import run_features

        run_features(load_config(args.config, args.overrides), args.l2)
    elif args.command == "search":
        from .search import run_search

        run_search(args.config, args.space, args.trials, args.storage, args.study, args.out, args.overrides)
    elif args.command == "evaluate":
        from .evaluate import evaluate_command

        evaluate_command(args.model, args.data, args.out, args.threshold, args.val_of)
    elif args.command == "export":
        from .export import export_command

        export_command(args.checkpoint, args.out, args.opset, args.precision_target, args.int8, args.version)
    elif args.command == "predict":
        from .predict import predict_command

        return predict_command(args.model, args.paths, args.threshold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
