"""Files written by a real Keras 2 (``tf_keras``, the Keras 2 of TensorFlow 2.x) load into the kit's ResNet.

The other tests write Keras 2's layout by hand; these let Keras 2 itself write
it, with its own automatic names, layer order, configs and attributes. They run
where ``tf_keras`` is installed (``pip install tf-keras==<TensorFlow's version>``)
and are skipped elsewhere. The network is built here from the published
description (Scapicchio, Lizzi et al., ML-INFN 2021): a module written
``add([shortcut, main])`` makes Keras 2 list the shortcut's layers first.
"""

import numpy as np
import pytest

pytest.importorskip("tensorflow")
k2 = pytest.importorskip("tf_keras")

from course_lib.density.keras2_weights import build_from_keras2_h5  # noqa: E402


def _conv_bn(x, filters, kernel, stride):
    return k2.layers.BatchNormalization()(k2.layers.Conv2D(filters, kernel, strides=stride, padding="same")(x))


def _module(x, mid, out, stride, project, shortcut_first):
    shortcut = _conv_bn(x, out, 1, stride) if project and shortcut_first else x
    y = k2.layers.LeakyReLU()(_conv_bn(x, mid, 1, 1))
    y = _conv_bn(k2.layers.LeakyReLU()(_conv_bn(y, mid, 3, stride)), out, 1, 1)
    if project and not shortcut_first:
        shortcut = _conv_bn(x, out, 1, stride)
    return k2.layers.LeakyReLU()(k2.layers.add([shortcut, y] if shortcut_first else [y, shortcut]))


def infn_resnet_keras2(size, shortcut_first):
    inputs = k2.Input((size, size, 3))
    x = k2.layers.MaxPooling2D(3, strides=2, padding="same")(k2.layers.LeakyReLU()(_conv_bn(inputs, 64, 3, 2)))
    for mid, out, stride in ((64, 128, 1), (128, 256, 2), (128, 256, 2), (128, 256, 2)):
        for block in range(3):
            x = _module(x, mid, out, stride if block == 0 else 1, block == 0, shortcut_first)
    x = k2.layers.GlobalAveragePooling2D()(k2.layers.Dropout(0.2)(x))
    return k2.Model(inputs, k2.layers.Dense(4, activation="softmax")(x))


@pytest.mark.parametrize("shortcut_first", [False, True])
def test_keras2_whole_model_and_weights_files_predict_as_keras2_did(tmp_path, shortcut_first):
    rng = np.random.default_rng(0)
    k2.backend.clear_session()
    k2.layers.Conv2D(1, 1)  # an earlier layer in the session shifts the automatic numbering
    original = infn_resnet_keras2(32, shortcut_first)
    for weight in original.weights:  # every value random, batch-norm statistics too
        if "gamma" in weight.name or "variance" in weight.name:
            weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype(np.float32))
        elif "kernel" not in weight.name:
            weight.assign(rng.normal(scale=0.1, size=weight.shape).astype(np.float32))
    original.compile(k2.optimizers.SGD(0.01), "categorical_crossentropy", ["acc"])
    x = rng.normal(size=(2, 32, 32, 3)).astype(np.float32)
    expected = original.predict(x, verbose=0)
    original.save(tmp_path / "model.h5", save_format="h5")
    original.save_weights(tmp_path / "weights.h5", save_format="h5")
    for name, method in (("model.h5", "graph depth"), ("weights.h5", "order")):
        model, report = build_from_keras2_h5(tmp_path / name, 32)
        assert report.method.startswith(method) and report.parameters == 2_262_660
        np.testing.assert_allclose(np.asarray(model(x, training=False)), expected, rtol=0, atol=1e-5)
    assert report.file.keras_version.startswith("2.")
