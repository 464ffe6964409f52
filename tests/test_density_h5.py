"""The INFN's Keras 2 ``.h5`` files into the kit's Keras 3 ResNet (course_lib.density.keras2_weights).

The original file (``weights-improvement-46-0.80.h5``) is not mirrored, so these
tests write Keras-2-style files themselves with h5py, in both layouts Keras 2
wrote (a whole model from ``model.save``/``ModelCheckpoint``; ``save_weights``),
from a kit model's weights under Keras 2's automatic layer names, numbered as a
session that had built other models first would number them.
"""

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

from course_lib.density.keras2_weights import (  # noqa: E402
    INFN_WEIGHTS_KEY, build_from_keras2_h5, load_keras2_weights, load_published_infn_model, read_keras2_h5,
)
from course_lib.density.model import ArchitectureMismatchError, build_density_resnet  # noqa: E402

SIZE = 64
KERAS2_BASE = {"InputLayer": "input", "Conv2D": "conv2d", "BatchNormalization": "batch_normalization",
               "LeakyReLU": "leaky_re_lu", "MaxPooling2D": "max_pooling2d", "Add": "add", "Dropout": "dropout",
               "GlobalAveragePooling2D": "global_average_pooling2d", "Dense": "dense"}


def _keras2_config(layer, name):
    """A layer's settings as Keras 2.2.4 wrote them (the keys the loader reads, and a few more)."""
    kind = type(layer).__name__
    c = layer.get_config()
    if kind == "InputLayer":
        return {"batch_input_shape": [None, *layer.batch_shape[1:]], "dtype": "float32", "name": name}
    if kind == "Conv2D":
        return {"name": name, "filters": c["filters"], "kernel_size": list(c["kernel_size"]),
                "strides": list(c["strides"]), "padding": c["padding"], "data_format": "channels_last",
                "dilation_rate": [1, 1], "activation": "linear", "use_bias": True}
    if kind == "BatchNormalization":
        return {"name": name, "axis": -1, "momentum": c["momentum"], "epsilon": c["epsilon"]}
    if kind == "LeakyReLU":
        return {"name": name, "alpha": 0.30000001192092896}
    if kind == "Dense":
        return {"name": name, "units": c["units"], "activation": "softmax"}
    return {"name": name}


def keras2_file(model, path, layout="full", shortcut_first=False, edit=None, seed=0):
    """Write ``model`` as Keras 2 would have: automatic names, shuffled numbers, bytes attributes.

    ``shortcut_first`` lists each module's shortcut layers before its main
    path's, as Keras 2 does for a module written ``add([shortcut, main])``.
    ``edit(layers)`` may change the list of ``[name, kind, [(weight, array)]]``
    before it is written. The kit's separate softmax becomes the dense
    layer's activation, as in the original.
    """
    rng = np.random.default_rng(seed)
    kit_layers = [layer for layer in model.layers if type(layer).__name__ != "Softmax"]
    if not any(type(layer).__name__ == "InputLayer" for layer in kit_layers):
        kit_layers.insert(0, model.get_layer("image"))
    numbers = {}
    for kind in KERAS2_BASE:
        count = sum(type(layer).__name__ == kind for layer in kit_layers)
        numbers[kind] = list(rng.permutation(count) + 17)  # conv2d_17 ...: a session's numbering
    auto = {layer.name: f"{KERAS2_BASE[type(layer).__name__]}_{numbers[type(layer).__name__].pop()}"
            for layer in kit_layers}
    order = [layer.name for layer in kit_layers]
    if shortcut_first:
        for name in [n for n in order if n.endswith("_shortcut_conv")]:
            module = name[:-len("_shortcut_conv")]
            for part in ("conv", "bn"):
                i, j = order.index(f"{module}_expand_{part}"), order.index(f"{module}_shortcut_{part}")
                order[i], order[j] = order[j], order[i]
    layers = [[auto[n], type(model.get_layer(n)).__name__,
               [(w.name, np.asarray(w.numpy())) for w in model.get_layer(n).weights]] for n in order]
    if edit is not None:
        edit(layers)
    config_layers = []
    for layer in kit_layers:
        inbound = [t._keras_history.operation.name for t in layer._inbound_nodes[0].input_tensors]
        config_layers.append({"name": auto[layer.name], "class_name": type(layer).__name__,
                              "config": _keras2_config(layer, auto[layer.name]),
                              "inbound_nodes": [[[auto[n], 0, 0, {}] for n in inbound]] if inbound else []})
    config = {"class_name": "Model", "config": {"name": "model_3", "layers": config_layers,
                                                "input_layers": [[auto["image"], 0, 0]],
                                                "output_layers": [[auto["logits"], 0, 0]]}}
    training = {"optimizer_config": {"class_name": "SGD", "config": {"lr": 0.009999999776482582, "momentum": 0.0,
                                                                      "decay": 0.0, "nesterov": False}},
                "loss": "categorical_crossentropy", "metrics": ["acc"]}
    with h5py.File(path, "w") as h5:
        group = h5.create_group("model_weights") if layout == "full" else h5
        group.attrs["layer_names"] = np.array([name.encode() for name, _, _ in layers])
        group.attrs["backend"] = b"tensorflow"
        group.attrs["keras_version"] = b"2.2.4"
        for name, _, weights in layers:
            layer_group = group.create_group(name)
            weight_names = [f"{name}/{weight}:0".encode() for weight, _ in weights]
            layer_group.attrs["weight_names"] = np.array(weight_names, dtype="S64" if not weights else None)
            for (weight, array), full in zip(weights, weight_names):
                layer_group.create_dataset(full.decode(), data=array)
        if layout == "full":
            h5.attrs["keras_version"] = b"2.2.4"
            h5.attrs["backend"] = b"tensorflow"
            h5.attrs["model_config"] = json.dumps(config).encode()
            h5.attrs["training_config"] = json.dumps(training).encode()
            h5.create_group("optimizer_weights")
    return path


@pytest.fixture(scope="module")
def trained_like():
    """A kit model whose every weight differs (moving statistics too), outputs far from saturated."""
    model = build_density_resnet(SIZE)
    rng = np.random.default_rng(1)
    for variable in model.weights:
        name = variable.path.split("/")[-1]
        if name in ("gamma", "moving_variance"):
            values = rng.uniform(0.5, 1.5, variable.shape)
        elif name == "kernel":
            values = variable.numpy()  # Glorot, as initialised
        else:
            values = rng.normal(scale=0.1, size=variable.shape)
        variable.assign(values.astype(np.float32))
    return model


@pytest.fixture(scope="module")
def image_batch():
    return np.random.default_rng(2).normal(size=(2, SIZE, SIZE, 3)).astype(np.float32)


def predictions(model, x):
    """Pre-softmax scores, which a saturated softmax cannot hide."""
    scores = keras.Model(model.inputs, model.get_layer("logits").output)
    return np.asarray(scores(x, training=False))


def assert_same_weights(model, source):
    for layer in source.layers:
        for theirs, ours in zip(layer.weights, model.get_layer(layer.name).weights):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)


@pytest.mark.parametrize("shortcut_first", [False, True])
def test_a_whole_keras2_model_loads_at_its_own_size_and_predicts_identically(
        tmp_path, trained_like, image_batch, shortcut_first):
    path = keras2_file(trained_like, tmp_path / "weights-improvement-46-0.80.h5", shortcut_first=shortcut_first)
    model, report = build_from_keras2_h5(path)
    assert model.input_shape == (None, SIZE, SIZE, 3)  # read from model_config, not assumed
    assert_same_weights(model, trained_like)
    np.testing.assert_array_equal(predictions(model, image_batch), predictions(trained_like, image_batch))
    assert report.method == "graph depth, kind and shapes" and len(report.rows) == 83
    assert report.parameters == trained_like.count_params() == 2_262_660
    assert report.file.layout == "full model" and report.file.keras_version == "2.2.4"
    assert report.file.training == "SGD (learning rate 0.01, momentum 0)"
    numbers = [int(found.split("_")[-1]) for _, _, found, _ in report.rows if found.startswith("conv2d_")]
    assert numbers != sorted(numbers) and min(numbers) == 17  # matched without the names' numbers
    summary = report.summary()
    assert "weights-improvement-46-0.80.h5: Keras 2.2.4 (tensorflow), full model" in summary
    assert str(tmp_path) not in summary  # printable in a stored notebook
    assert report.table(2)[0].split()[:3] == ["1", "stem_conv", "<-"]


@pytest.mark.parametrize("shortcut_first", [False, True])
def test_a_keras2_weights_only_file_loads_by_order_kind_and_shapes(tmp_path, trained_like, image_batch,
                                                                   shortcut_first):
    path = keras2_file(trained_like, tmp_path / "final_weights.h5", layout="weights", shortcut_first=shortcut_first,
                       seed=3)
    found = read_keras2_h5(path)
    assert found.layout == "weights only" and found.input_shape is None and len(found.layers) == 83
    model = build_density_resnet(SIZE)
    report = load_keras2_weights(model, path)
    assert_same_weights(model, trained_like)
    np.testing.assert_array_equal(predictions(model, image_batch), predictions(trained_like, image_batch))
    assert report.method == "order, kind and shapes"
    # same-shaped shortcut/expand pairs (stage 1-2 convolutions, all four batch-norm pairs): the note says how
    twins = [note for note in report.notes if note.startswith("no graph in the file")]
    assert len(twins) == 1 and "stage1_block1_conv, stage1_block1_bn, stage2_block1_conv" in twins[0]
    assert "stage3_block1_conv" not in twins[0]
    assert f"lists each module's {'shortcut' if shortcut_first else 'main path'} first" in twins[0]


def test_a_weights_only_file_is_built_at_650_and_says_so(tmp_path, trained_like):
    path = keras2_file(trained_like, tmp_path / "w.h5", layout="weights")
    model, report = build_from_keras2_h5(path)
    assert model.input_shape == (None, 650, 650, 3)
    assert any("stores no input size: built at 650x650" in note for note in report.notes)


def test_loading_at_another_size_than_the_files_is_noted(tmp_path, trained_like):
    path = keras2_file(trained_like, tmp_path / "m.h5")
    report = load_keras2_weights(build_density_resnet(32), path)
    assert any("took 64x64x3 inputs and this one takes 32x32x3" in note for note in report.notes)


def test_a_missing_layer_is_named_with_its_position_and_shapes(tmp_path, trained_like):
    def drop_third_batch_norm(layers):
        weighted = [i for i, (_, _, w) in enumerate(layers) if w]
        del layers[weighted[3]]  # stage1_block1_reduce_bn

    path = keras2_file(trained_like, tmp_path / "missing.h5", edit=drop_third_batch_norm)
    with pytest.raises(ArchitectureMismatchError) as error:
        build_from_keras2_h5(path)
    message = str(error.value)
    assert "missing.h5" in message and "82 layers with weights" in message and "has 83" in message
    assert "#4 stage1_block1_reduce_bn: expected BatchNormalization gamma(64,) beta(64,)" in message
    assert "missing from the file" in message
    assert "build_density_resnet" in message  # what to do


def test_an_extra_and_a_reshaped_layer_are_listed(tmp_path, trained_like):
    def widen_and_append(layers):
        weighted = [i for i, (_, _, w) in enumerate(layers) if w]
        name, kind, weights = layers[weighted[4]]  # stage1_block1_spatial_conv, 3x3 64 -> 64
        layers[weighted[4]] = [name, kind, [("kernel", np.zeros((3, 3, 64, 32), np.float32)),
                                            ("bias", np.zeros(32, np.float32))]]
        layers.append(["dense_99", "Dense", [("kernel", np.zeros((4, 2), np.float32)),
                                             ("bias", np.zeros(2, np.float32))]])

    path = keras2_file(trained_like, tmp_path / "other.h5", layout="weights", edit=widen_and_append)
    with pytest.raises(ArchitectureMismatchError) as error:
        load_keras2_weights(build_density_resnet(SIZE), path)
    message = str(error.value)
    assert ("#5 stage1_block1_spatial_conv: expected Conv2D kernel(3, 3, 64, 64) bias(64,); found conv2d_"
            in message)
    assert "kernel(3, 3, 64, 32) bias(32,)" in message
    assert "extra in the file: dense_99 (file layer 84): Dense kernel(4, 2) bias(2,)" in message


def test_weights_of_the_right_shapes_with_the_wrong_stride_are_refused(tmp_path, trained_like):
    path = keras2_file(trained_like, tmp_path / "stride.h5")
    with h5py.File(path, "r+") as h5:
        config = json.loads(h5.attrs["model_config"])
        stem = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Conv2D")
        stem["config"]["strides"] = [1, 1]
        h5.attrs["model_config"] = json.dumps(config).encode()
    with pytest.raises(ArchitectureMismatchError, match=r"stem_conv: strides \[1, 1\] in the file"):
        build_from_keras2_h5(path)


def test_a_one_channel_file_builds_a_one_channel_model(tmp_path):
    source = build_density_resnet(SIZE, channels=1)
    path = keras2_file(source, tmp_path / "grey.h5")
    model, report = build_from_keras2_h5(path)
    assert model.input_shape == (None, SIZE, SIZE, 1) and report.parameters == 2_261_508
    assert_same_weights(model, source)


def test_a_keras3_legacy_h5_of_the_kit_loads_the_same_way(tmp_path):
    source = build_density_resnet(SIZE)
    path = tmp_path / "kit.h5"
    source.save(path)  # Keras 3 writes the legacy layout, with its own config format
    model, report = build_from_keras2_h5(path)
    assert report.file.keras_version.startswith("3.") and report.method == "graph depth, kind and shapes"
    assert_same_weights(model, source)


def test_files_that_are_not_keras2_models_get_errors_naming_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.h5: no such file"):
        read_keras2_h5(tmp_path / "absent.h5")
    text = tmp_path / "notes.h5"
    text.write_text("not an HDF5 file")
    with pytest.raises(ValueError, match=r"notes\.h5: not an HDF5 file"):
        build_from_keras2_h5(text)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as h5:
        h5.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match=r"empty\.h5: an HDF5 file without Keras layers"):
        read_keras2_h5(empty)
    keras3 = tmp_path / "kit.weights.h5"
    build_density_resnet(32).save_weights(keras3)
    with pytest.raises(ValueError, match="Keras 3 weights file: load it with .*load_density_model"):
        read_keras2_h5(keras3)


def test_the_published_model_is_fetched_or_skipped_with_a_reason(monkeypatch, capsys):
    from course_lib.data import get_entry

    assert get_entry(INFN_WEIGHTS_KEY).key == INFN_WEIGHTS_KEY
    import course_lib.data as data

    monkeypatch.setattr(data, "try_fetch", lambda key: print(f"[real data unavailable, section skipped] {key}"))
    assert load_published_infn_model() is None
    assert INFN_WEIGHTS_KEY in capsys.readouterr().out


def run_cli(argv):
    import argparse

    from course_lib.density.cli import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.run(args)


@pytest.fixture(scope="module")
def phantom_set(tmp_path_factory):
    from course_lib.phantoms.density_set import build_density_phantom_dataset

    root = tmp_path_factory.mktemp("phantoms")
    return root, build_density_phantom_dataset(root, 2, projections=("CC_R",), shape=(128, 84), seed=0,
                                               splits={"train": 0.5, "test": 0.5})


def test_cli_predicts_one_projection_from_a_keras2_file(tmp_path, trained_like, phantom_set, capsys):
    from course_lib.density.evaluate import read_prediction_file
    from course_lib.density.predict import predict_split

    root, frame = phantom_set
    path = keras2_file(trained_like, tmp_path / "weights-improvement-46-0.80.h5", shortcut_first=True)
    assert run_cli(["density", "predict", str(root), str(path), str(tmp_path / "pred"),
                    "--projections", "CC_R"]) == 0
    out = capsys.readouterr().out
    assert "83 layers mapped by graph depth, kind and shapes onto build_density_resnet(64" in out
    written = read_prediction_file(tmp_path / "pred" / "predictions_ccr.txt")
    rows, expected = predict_split(trained_like, frame, "CC_R")
    assert written.shape == (len(rows), 4) == expected.shape
    np.testing.assert_allclose(written, expected, rtol=0, atol=1e-12)  # the %.18e text round-trips


def test_cli_refuses_a_file_for_several_projections_or_of_another_architecture(tmp_path, trained_like,
                                                                              phantom_set, capsys):
    root, _ = phantom_set
    path = keras2_file(trained_like, tmp_path / "m.h5")
    assert run_cli(["density", "predict", str(root), str(path), str(tmp_path / "pred")]) == 2
    assert "holds one projection's model" in capsys.readouterr().err
    assert run_cli(["density", "predict", str(root), str(tmp_path / "absent.h5"), str(tmp_path / "pred")]) == 2
    assert "absent.h5: no such file or folder" in capsys.readouterr().err

    def drop_last(layers):
        del layers[-1]

    other = keras2_file(trained_like, tmp_path / "no_head.h5", layout="weights", edit=drop_last)
    assert run_cli(["density", "predict", str(root), str(other), str(tmp_path / "pred"),
                    "--projections", "CC_R"]) == 2
    err = capsys.readouterr().err
    assert "no_head.h5: not the INFN density ResNet" in err and "#83 logits: expected Dense" in err
    assert not (tmp_path / "pred" / "predictions_ccr.txt").exists()
