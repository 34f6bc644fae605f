"""Offline ImageNet weights: renamed EfficientNet-PyTorch state dicts load into timm and behave the same."""

import numpy as np
import pytest
import timm
import torch
from efficientnet_lite_pytorch import EfficientNet

from nailong_vision.classifier import Classifier
from nailong_vision.decode import decode_frames
from nailong_vision.preprocess import preprocess
from trainer.data import prepare_data
from trainer.checkpoint import load_model
from trainer.export import export_command
from trainer.loop import predict_validation, train
from trainer.model import build_initialised_model, preprocess_spec
from trainer.pretrained import load_package_weights, package_weights_path, rename_efficientnet_pytorch

from .conftest import tiny_config


@pytest.mark.parametrize("name, reference", [("tf_efficientnet_lite0", "efficientnet-lite0"),
                                             ("tf_efficientnet_lite2", "efficientnet-lite2")])
def test_renamed_weights_load_strictly_and_reproduce_the_packages_imagenet_logits(name, reference):
    state = torch.load(package_weights_path(name), map_location="cpu", weights_only=True)
    model = timm.create_model(name).eval()
    model.load_state_dict(rename_efficientnet_pytorch(state, model), strict=True)
    # The package's own EfficientNet-PyTorch implementation, with the package's own file.
    original = EfficientNet.from_pretrained(reference, weights_path=package_weights_path(name)).eval()
    size = EfficientNet.get_image_size(reference)
    inputs = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(inputs), original(inputs)
    assert ours.shape == (2, 1000)
    assert torch.allclose(ours, theirs, atol=1e-4)
    assert torch.equal(ours.argmax(1), theirs.argmax(1))


def test_a_two_class_model_gets_the_backbone_and_a_fresh_head():
    model = timm.create_model("tf_efficientnet_lite0", num_classes=2)
    fresh_head = model.classifier.weight.clone()
    load_package_weights(model, "tf_efficientnet_lite0")
    state = torch.load(package_weights_path("tf_efficientnet_lite0"), map_location="cpu", weights_only=True)
    assert torch.equal(model.conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(model.classifier.weight, fresh_head)


def test_unknown_model_has_no_packaged_weights():
    with pytest.raises(ValueError, match="no packaged weights"):
        package_weights_path("convnext_atto")


def test_model_normalization_takes_the_pretrained_preprocessing(tmp_path, image_root):
    cfg = tiny_config(tmp_path, image_root, "model=tf_efficientnet_lite0", "normalization=model")
    spec = preprocess_spec(cfg)
    assert (spec.mean, spec.std, spec.resize) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic")
    assert preprocess_spec(tiny_config(tmp_path, image_root)).resize == "bilinear"


def test_timm_pretrained_weights_from_a_local_file_through_timms_overlay(tmp_path, image_root):
    # What a maintainer with internet gets from the hub, given here as a local file.
    hub = timm.create_model("convnext_atto", num_classes=1000)
    torch.save(hub.state_dict(), tmp_path / "convnext_atto.pth")
    cfg = tiny_config(tmp_path, image_root, "pretrained=true", f"pretrained_file={tmp_path / 'convnext_atto.pth'}")
    model = build_initialised_model(cfg, 2)
    assert torch.equal(model.stem[0].weight, hub.stem[0].weight)
    assert model.get_classifier().out_features == 2


def test_pretrained_lite_trains_exports_and_the_plugin_scores_like_the_trainer(tmp_path, image_root):
    cfg = tiny_config(tmp_path, image_root, "model=tf_efficientnet_lite0", "pretrained=true",
                      "pretrained_source=package", "normalization=model", "max_steps=2", "eval_every=2",
                      "freeze_batchnorm=true", "backbone_lr_scale=0.3")
    train(cfg)
    onnx_path = export_command(f"{cfg.checkpoint_dir}/best.pt", str(tmp_path / "lite.onnx"), version="test")
    data = prepare_data(cfg)
    model, _ = load_model(f"{cfg.checkpoint_dir}/best.pt")
    trainer_probs = predict_validation(model, data, torch.device("cpu"), cfg)[:, data.positive_index]
    classifier = Classifier(onnx_path, providers=["CPUExecutionProvider"])
    assert classifier.info.spec == data.spec and classifier.info.spec.mean == (0.5, 0.5, 0.5)
    for file_index, source in enumerate(data.val_sources):
        frames = decode_frames(open(source, "rb").read(), max_frames=cfg.eval_frames, draft_size=cfg.image_size)
        plugin_score = classifier.nailong_scores(preprocess(frames, classifier.info.spec)).max()
        assert abs(plugin_score - trainer_probs[file_index]) < 1e-4, source
    assert np.isfinite(trainer_probs).all()
