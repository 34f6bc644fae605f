"""Command line: ``python -m trainer train|search|evaluate|export|predict|frame-rule`` in a checkout; installed from the
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
  mine      挖掘难负样本：给图片池打分、出编号缩略图、把标注变成数据目录 / hard-negative mining
  refresh   用管理员的纠错更新模型（带检查）/ learn the admins' corrections, gated
  review-floor  由模型自己的验证集评估写入复核下限 / write the review floor from the model's own evaluation
  frame-rule    在留出家族上比较动图的帧规则 / compare animation frame rules on held-out sticker families
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
    source.add_argument("--wild-of", metavar="CONFIG", help="训练配置的野外集（wild_sources，从不训练）/ the wild set of a training config")
    source.add_argument("--families", nargs="+", metavar="DIR",
                        help="留出的表情包家族目录（MANIFEST 的 family 列）：按家族统计误判 / held-out sticker families "
                             "(MANIFEST family column): false positives per family, mean and worst decile, the 10 worst")
    evaluate.add_argument("--max-fpr", type=float, default=0.01,
                          help="与 --families 一起：家族集误判率 ≤ 此值的最低阈值 / with --families: the threshold rule's "
                               "family-set false-positive rate (0.01)")
    evaluate.add_argument("--wild-line", metavar="CONFIG",
                          help="与 --families 一起：该配置的野外集作第二条线 / with --families: that config's wild set as the "
                               "second line")
    evaluate.add_argument("--val-line", metavar="CONFIG",
                          help="与 --families 一起：该配置的分组验证集（从未训练的奶龙的召回率）/ with --families: that "
                               "config's grouped validation (recall on nailong never trained on)")
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
    export.add_argument("--wild-of", metavar="CONFIG",
                        help="用该配置的野外集（wild_sources）定阈值：野外集误判率 ≤ wild_max_fpr 的最低阈值 / set the "
                             "threshold on the config's wild set: the lowest with its false-positive rate ≤ wild_max_fpr")

    predict = commands.add_parser("predict", help="预测 / classify images",
                                  description="用与插件相同的解码和预处理给出判断。/ Classify with the plugin's own decoding and preprocessing.")
    predict.add_argument("--model", required=True, help="model.onnx")
    predict.add_argument("paths", nargs="+", metavar="IMAGE|DIR")
    predict.add_argument("--threshold", type=float, help="判定阈值 / threshold (default: the model's)")

    mine = commands.add_parser(
        "mine", help="难负样本挖掘 / hard-negative mining",
        description="1) --model M --pool DIR... --out ROUND：用插件的解码与模型给图片池打分，最高分的图片写成编号缩略图"
                    "（sheets/*.png）和待标注的 to_label.csv；2) 在 label 列填 nailong / other / skip 后，"
                    "--labelled ROUND/to_label.csv --out FOLDER 生成带 MANIFEST.csv 的数据目录；"
                    "3) --rebuild FOLDER/MANIFEST.csv --out FOLDER 从来源重建。/ "
                    "1) score pools through the plugin's path, write the top images as numbered contact sheets and "
                    "to_label.csv; 2) after labelling, build an ImageFolder with a MANIFEST.csv; 3) rebuild one from "
                    "its manifest.")
    step = mine.add_mutually_exclusive_group(required=True)
    step.add_argument("--pool", nargs="+", metavar="[SOURCE=]DIR|npm:NAME@VERSION", help="图片池 / unlabelled pools")
    step.add_argument("--labelled", metavar="CSV", help="标注好的 to_label.csv / the labelled to_label.csv")
    step.add_argument("--rebuild", metavar="MANIFEST", help="按清单重建数据目录 / rebuild a folder from its MANIFEST.csv")
    mine.add_argument("--model", help="model.onnx 或 / or checkpoint .pt（打分时必需 / needed with --pool）")
    mine.add_argument("--out", required=True, help="输出目录 / output folder")
    mine.add_argument("--top", type=int, default=192, help="待标注的最高分图片数，0 为全部 / images to label, 0 for all (default 192)")
    mine.add_argument("--cache-dir", default=".cache/trainer", help="数据包缓存 / where packages are unpacked")
    mine.add_argument("--git-dir", action="append", default=[], metavar="OWNER/NAME=PATH",
                      help="重建时使用本地 git 仓库 / a local git directory for a source repository (--rebuild)")
    floor = commands.add_parser(
        "review-floor", help="写入复核下限 / write the review floor",
        description="导出时 --wild-of 的校准已写入复核下限（验证集奶龙召回率 ≥ 99% 的最高阈值）。对更早导出、验证集无法在此重新打分的模型，"
                    "用它自己的评估（evaluate --val-of 的 report.json 和 mistakes.csv）写入；权重和阈值不变，重写校验文件。/ "
                    "Export with --wild-of writes the review floor (the highest threshold with validation nailong recall ≥ "
                    "99%). For a model exported before, whose validation cannot be scored again here, write it from the "
                    "model's own evaluation (report.json and mistakes.csv of evaluate --val-of); weights and threshold stay, "
                    "the checksum is written again.")
    floor.add_argument("--model", required=True, help="model.onnx")
    floor.add_argument("--evaluation", required=True, metavar="DIR", help="该模型的验证集评估目录 / its validation evaluation")

    refresh = commands.add_parser(
        "refresh", help="用纠错更新模型 / learn the admins' corrections",
        description="从当前模型出发，学习管理员的纠错，同时用近期图片和/或训练数据回放保持其余判断不变；通过检查后导出。"
                    "中断后再次运行同一命令即可继续。退出码：0 通过，3 未通过（候选模型留在 --out），2 输入有误，1 其他错误。/ "
                    "Fine-tune the current model on the admins' corrections, with a replay of recent images and/or "
                    "training folders keeping everything else where it was; gate and export the result. Run the same "
                    "command again to resume. Exit codes: 0 gate passed, 3 gate failed (candidate left in --out), "
                    "2 bad input, 1 anything else.")
    refresh.add_argument("--base", required=True, metavar="DIR",
                         help="当前模型目录（nailong.onnx + nailong.pt）/ current model folder (nailong.onnx + nailong.pt)")
    refresh.add_argument("--feedback", required=True, metavar="DIR",
                         help="插件的纠错目录 <data_dir>/feedback / the plugin's corrections folder")
    refresh.add_argument("--recent", metavar="DIR", help="插件的近期图片目录 <data_dir>/recent / the plugin's recent images")
    refresh.add_argument("--config", help="训练配置：其 data 作回放和验证 / training config whose data: is replayed and "
                                          "gives the grouped validation")
    refresh.add_argument("--out", required=True, metavar="DIR", help="候选模型和检查报告的目录 / folder for the candidate "
                                                                   "and the gate report")
    refresh.add_argument("--budget-seconds", type=float, default=600.0,
                         help="总时间预算，步数由此推算 / time budget of the whole run; steps are planned from it (600)")
    refresh.add_argument("--max-steps", type=int, default=160, help="步数上限 / at most this many steps (160)")
    refresh.add_argument("--threads", type=int, help="CPU 线程数 / CPU threads (default: torch's)")
    refresh.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="设备 / device (auto)")
    refresh.add_argument("--seed", type=int, default=0, help="随机种子 / seed")
    frame_rule = commands.add_parser(
        "frame-rule", help="比较帧规则 / compare frame rules",
        description="每张图的帧只打分一次，再按各帧规则（max、mean、trimmed_mean:T、k_of_n:K）得出整图分数，在留出家族上比较："
                    "家族集误判率 ≤ --max-fpr 的最低阈值下的召回率与家族误判率。选中的规则经配置项 frame_rule 导出。/ "
                    "Score every image's frames once, then compare the frame rules on held-out families: recall and "
                    "family FPR at each rule's own threshold (lowest with family-set FPR ≤ --max-fpr). The chosen rule "
                    "ships through the config key frame_rule.")
    frame_rule.add_argument("--model", required=True, help="model.onnx 或 / or checkpoint .pt")
    frame_rule.add_argument("--families", nargs="+", required=True, metavar="DIR",
                            help="留出家族目录（及来源不相交的奶龙目录）/ held-out family folders (and source-disjoint nailong)")
    frame_rule.add_argument("--out", required=True, help="报告目录 / report directory")
    frame_rule.add_argument("--rules", nargs="+", help="候选规则 / candidate rules (default: max mean trimmed_mean:0.25 "
                                                       "k_of_n:2 k_of_n:3)")
    frame_rule.add_argument("--max-fpr", type=float, default=0.01, help="家族集误判率上限 / family-set FPR of the rule (0.01)")
    frame_rule.add_argument("--write", action="store_true",
                            help="把选中的规则写进 --model（.onnx 的元数据与旁边的 .pt）/ write the chosen rule into --model "
                                 "(the .onnx metadata and the .pt beside it)")
    frame_rule.add_argument("--nailong-of", metavar="CONFIG",
                            help="加入该配置分组验证集中的奶龙图片计算召回率 / add the nailong images of that config's "
                                 "grouped validation to the recall")
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
    from .data import DataMissing

    try:
        return run_command(args)
    except DataMissing as error:
        print(error, file=sys.stderr)
        return 2


def run_command(args: argparse.Namespace) -> int:
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

        evaluate_command(args.model, args.data, args.out, args.threshold, args.val_of, args.wild_of, args.families,
                         args.wild_line, args.max_fpr, args.val_line)
    elif args.command == "export":
        from .export import export_command

        export_command(args.checkpoint, args.out, args.opset, args.precision_target, args.int8, args.version,
                       args.wild_of)
    elif args.command == "predict":
        from .predict import predict_command

        return predict_command(args.model, args.paths, args.threshold)
    elif args.command == "mine":
        from . import mine

        if args.pool:
            if not args.model:
                raise SystemExit("mine --pool needs --model / 打分需要 --model")
            mine.mine_command(args.model, args.pool, args.out, args.top, args.cache_dir)
        elif args.labelled:
            mine.build_imagefolder(args.labelled, args.out)
        else:
            mine.rebuild_imagefolder(args.rebuild, args.out, args.cache_dir,
                                     dict(item.split("=", 1) for item in args.git_dir))
    elif args.command == "review-floor":
        from .calibrate import review_floor_from_evaluation

        review_floor_from_evaluation(args.model, args.evaluation)
    elif args.command == "refresh":
        return refresh_command(args)
    elif args.command == "frame-rule":
        from .frame_rules import frame_rule_command

        frame_rule_command(args.model, args.families, args.out, args.rules, args.max_fpr, args.nailong_of, args.write)
    return 0


def refresh_command(args: argparse.Namespace) -> int:
    """The exit code the bot reads (handoff.ExitCode): the gate passed or failed, bad input, or an error
    (interrupted included)."""
    from nailong_vision.handoff import ExitCode

    from .refresh import RefreshInputError, RefreshInterrupted, RefreshSettings, refresh

    settings = RefreshSettings(budget_seconds=args.budget_seconds, max_steps=args.max_steps, threads=args.threads,
                               device=args.device, seed=args.seed)
    log = logging.getLogger("trainer.refresh")
    try:
        report = refresh(args.base, args.feedback, args.out, args.recent, args.config, settings)
    except RefreshInputError as error:
        log.error("%s", error)
        return ExitCode.BAD_INPUT
    except RefreshInterrupted as error:
        log.warning("%s", error)
        return ExitCode.ERROR
    except Exception:
        log.exception("更新失败 / refresh failed")
        return ExitCode.ERROR
    for reason in report.reasons:
        log.warning("%s", reason)
    return ExitCode.GATE_PASSED if report.passed else ExitCode.GATE_FAILED


if __name__ == "__main__":
    sys.exit(main())
