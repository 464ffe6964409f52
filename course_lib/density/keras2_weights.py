"""The INFN's own Keras 2 ``.h5`` files, loaded into the kit's Keras 3 density ResNet.

The original models were saved by Keras 2 (``ModelCheckpoint`` with whole
models: ``weights-improvement-46-0.80.h5`` for CC_R). Keras 3 reads such a
file either by rebuilding Keras 2's model (with Keras 2's layer names, which
Grad-CAM by name cannot use) or, with ``model.load_weights``, strictly in the
file's layer order: a file that lists each residual module's shortcut before
its main path stops at the first module whose branches differ in shape
(``stage3_block1``), after loading the same-shaped ones of stages 1-2
swapped. And the original's names are Keras 2's
automatic ones (``conv2d_17``, ``batch_normalization_3``, ``dense_1``),
numbered by whatever else the training session had built before, so names
are never used here. A layer of the file is matched to a layer of
:func:`~course_lib.density.model.build_density_resnet` by

1. its place among the layers that own weights (the file's ``layer_names``
   order); where the file stores its ``model_config``, by its place in the
   graph instead: the number of weighted layers on the longest path from the
   input, which does not depend on how Keras 2 ordered the two branches of a
   residual module;
2. its kind (convolution, batch norm, dense: read from its weight names) and
   the shapes of its weights.

A file of another architecture raises
:class:`~course_lib.density.model.ArchitectureMismatchError` listing the
layers that differ. Both Keras 2 layouts are read: a whole model
(``model_weights/<layer>/<layer>/<weight>:0``, with ``model_config``) and
``save_weights`` output (the layer groups at the root, no graph).

>>> from course_lib.density.keras2_weights import load_published_infn_model
>>> loaded = load_published_infn_model()  # doctest: +SKIP
>>> model, report = loaded  # doctest: +SKIP
>>> print(report.summary())  # doctest: +SKIP
"""

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from course_lib.density.model import INPUT_SIZE, ArchitectureMismatchError, build_density_resnet

__all__ = [
    "INFN_WEIGHTS_KEY",
    "Keras2File",
    "MappingReport",
    "read_keras2_h5",
    "load_keras2_weights",
    "build_from_keras2_h5",
    "load_published_infn_model",
]

#: Registry key of the INFN's best CC_R model (epoch 46, validation accuracy 0.80).
INFN_WEIGHTS_KEY = "infn-density/myproject/CC_R_model/weights-improvement-46-0.80.h5"
_WHAT_TO_DO = ("This loader reads only the INFN density ResNet (41 convolutions, 41 batch norms, one dense "
               "layer; course_lib.density.model.build_density_resnet). For another network, build it in Keras 3 "
               "and set its weights from the file with h5py; for a kit model saved by Keras 3, use "
               "course_lib.density.model.load_density_model.")


@dataclass
class FileLayer:
    """One layer of the file that owns weights, in the file's order."""

    name: str
    kind: str
    weights: list  # (short weight name, array), in the file's order
    position: int = 0  # place among the layers with weights of its own file or model, from 1
    depth: int = None  # weighted layers on the longest path from the input (needs model_config)
    config: dict = None  # the kit's layer settings (kit layers only)

    @property
    def signature(self):
        return _signature(self.kind, [(n, a.shape) for n, a in self.weights])


@dataclass
class Keras2File:
    """What :func:`read_keras2_h5` found in a Keras HDF5 file."""

    path: Path
    layout: str  # "full model" or "weights only"
    keras_version: str
    backend: str
    layers: list  # FileLayer, layers with weights only
    input_shape: tuple = None  # (size, size, channels) from model_config
    config_layers: list = None  # model_config's layer entries
    training: str = None  # optimizer and learning rate from training_config

    def describe(self):
        shape = "x".join(map(str, self.input_shape)) if self.input_shape else "not stored"
        return (f"{self.path.name}: Keras {self.keras_version} ({self.backend}), {self.layout}, "
                f"{len(self.layers)} layers with weights, input {shape}")


@dataclass
class MappingReport:
    """How the file's layers were matched to the kit's, for printing or checking.

    ``rows`` holds ``(position, kit layer, file layer, shapes)`` in the kit's
    layer order (position counts layers with weights, from 1).
    """

    file: Keras2File
    model_input: tuple
    method: str
    rows: list
    notes: list = field(default_factory=list)

    @property
    def parameters(self):
        return int(sum(np.prod(shape) for *_, shapes in self.rows for shape in shapes))

    def summary(self):
        lines = [self.file.describe(),
                 f"{len(self.rows)} layers mapped by {self.method} onto build_density_resnet"
                 f"({self.model_input[0]}, channels={self.model_input[2]}): {self.parameters:,} values set"]
        if self.file.training:
            lines.append(f"trained with {self.file.training}")
        return "\n".join(lines + [f"note: {note}" for note in self.notes])

    def table(self, first=None):
        """The mapping as text lines: position, kit layer <- file layer, shapes."""
        return [f"{pos:3d} {kit:32} <- {found:24} {' '.join(str(s) for s in shapes)}"
                for pos, kit, found, shapes in self.rows[:first]]


def _signature(kind, weights):
    return (kind,) + tuple((name, tuple(int(d) for d in shape)) for name, shape in weights)


def _describe_signature(signature):
    kind, *weights = signature
    return f"{kind} " + " ".join(f"{name}{shape}" for name, shape in weights)


def _text(value):
    return value.decode("utf8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def _string_list(attrs, name):
    """A list-of-strings attribute; Keras 2 splits long ones into ``name0``, ``name1`` ..."""
    if name in attrs:
        return [_text(v) for v in np.atleast_1d(attrs[name])]
    chunks = []
    while f"{name}{len(chunks)}" in attrs:
        chunks.append(attrs[f"{name}{len(chunks)}"])
    return [_text(v) for chunk in chunks for v in np.atleast_1d(chunk)] if chunks else None


def _kind(weights):
    """Convolution, dense or batch norm, from the weight names (Keras 2 and 3 name them alike)."""
    arrays = dict(weights)
    if set(arrays) == {"gamma", "beta", "moving_mean", "moving_variance"}:
        return "BatchNormalization"
    if set(arrays) <= {"kernel", "bias"} and "kernel" in arrays:
        return {4: "Conv2D", 2: "Dense"}.get(arrays["kernel"].ndim, "other")
    return "other"


def _inbound_names(entry):
    """Names of the layers feeding a config layer, in Keras 2 or Keras 3 config format."""
    if isinstance(entry, dict):
        history = entry.get("config", {}).get("keras_history") if isinstance(entry.get("config"), dict) else None
        if history:
            return [history[0]]
        return [name for value in entry.values() for name in _inbound_names(value)]
    if isinstance(entry, (list, tuple)):  # JSON gives lists, a live Keras 3 config tuples
        if len(entry) >= 3 and isinstance(entry[0], str) and isinstance(entry[1], int):
            return [entry[0]]  # Keras 2: [layer name, node index, tensor index, kwargs]
        return [name for value in entry for name in _inbound_names(value)]
    return []


def _weighted_depths(config_layers, weighted):
    """Weighted layers on the longest path from the input to each layer of a config graph."""
    if not any("inbound_nodes" in layer for layer in config_layers):  # a Sequential config: a chain
        depth, depths = 0, {}
        for layer in config_layers:
            depth += layer["config"]["name"] in weighted
            depths[layer["config"]["name"]] = depth
        return depths
    parents = {layer.get("name", layer["config"].get("name")): _inbound_names(layer.get("inbound_nodes", []))
               for layer in config_layers}
    depths = {}

    def depth(name):  # the configs list layers in topological order, so this recursion stays shallow
        if name not in depths:
            depths[name] = max((depth(p) for p in parents.get(name, []) if p in parents), default=0) \
                + (name in weighted)
        return depths[name]

    for name in parents:
        depth(name)
    return depths


def _input_shape(config_layers):
    for layer in config_layers:
        if layer.get("class_name") == "InputLayer":
            shape = layer["config"].get("batch_input_shape") or layer["config"].get("batch_shape")
            return tuple(shape[1:]) if shape else None
    first = config_layers[0]["config"] if config_layers else {}
    shape = first.get("batch_input_shape") or first.get("batch_shape")  # Sequential: on the first layer
    return tuple(shape[1:]) if shape else None


def _training(attrs):
    if "training_config" not in attrs:
        return None
    try:
        optimizer = json.loads(_text(attrs["training_config"]))["optimizer_config"]
        settings = optimizer["config"]
        rate = settings.get("learning_rate", settings.get("lr"))
        rate = f"{float(rate):g}" if isinstance(rate, (int, float)) else "scheduled"
        name = optimizer["class_name"].split(">")[-1]  # tf.keras 2.x writes "Custom>SGD"
        return f"{name} (learning rate {rate}, momentum {settings.get('momentum', 0):g})"
    except (KeyError, TypeError, ValueError):
        return None


def read_keras2_h5(path):
    """Read the layers with weights (and the graph, when stored) of a Keras 2 HDF5 file.

    Raises ``ValueError`` naming the file when it is not HDF5 or holds no Keras layers
    (``FileNotFoundError`` when there is no such file).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; give the .h5 that Keras 2 wrote")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path}: not an HDF5 file ({error}); give the .h5 that Keras 2 wrote "
                         "(model.save, ModelCheckpoint or save_weights)") from error
    with handle as h5:
        group = h5["model_weights"] if "model_weights" in h5 else h5
        names = _string_list(group.attrs, "layer_names")
        if names is None:
            hint = (" It looks like a Keras 3 weights file: load it with "
                    "course_lib.density.model.load_density_model." if "layers" in h5 or "vars" in h5 else "")
            raise ValueError(f"{path}: an HDF5 file without Keras layers (no 'layer_names' attribute).{hint}")
        layers = []
        for name in names:
            weight_names = _string_list(group[name].attrs, "weight_names") or []
            weights = [(w.split("/")[-1].split(":")[0], np.asarray(group[name][w])) for w in weight_names]
            if weights:
                layers.append(FileLayer(name, _kind(weights), weights, len(layers) + 1))
        config = json.loads(_text(h5.attrs["model_config"])) if "model_config" in h5.attrs else None
        found = Keras2File(path, "full model" if "model_weights" in h5 else "weights only",
                           _text(group.attrs.get("keras_version", h5.attrs.get("keras_version", "unknown"))),
                           _text(group.attrs.get("backend", h5.attrs.get("backend", "unknown"))), layers,
                           training=_training(h5.attrs))
    if config is not None:
        inner = config.get("config", {})
        found.config_layers = inner.get("layers", inner) if isinstance(inner, dict) else inner
        found.input_shape = _input_shape(found.config_layers)
        depths = _weighted_depths(found.config_layers, {layer.name for layer in layers})
        for layer in layers:
            layer.depth = depths.get(layer.name)
    return found


def _kit_layers(model):
    """The kit model's layers with weights, as :class:`FileLayer` (zero-size stand-ins for the values)."""
    layers = [FileLayer(layer.name, type(layer).__name__,
                        [(w.name, np.broadcast_to(np.float32(0), tuple(w.shape))) for w in layer.weights],
                        config=layer.get_config())
              for layer in model.layers if layer.weights]
    for position, layer in enumerate(layers, 1):
        layer.position = position
    depths = _weighted_depths(model.get_config()["layers"], {layer.name for layer in layers})
    for layer in layers:
        layer.depth = depths[layer.name]
    return layers


def _canonical(layers):
    """Graph order: by depth, then kind and shapes, then the file's order (ties only)."""
    order = sorted(range(len(layers)), key=lambda i: (layers[i].depth, layers[i].signature, i))
    return [layers[i] for i in order]


def _align(expected, found, window=4):
    """Pair expected and found layers by signature, in order; returns (pairs, differences, reordered).

    ``difflib`` aligns the two sequences; layers it leaves out are paired
    with a layer of the same signature at most ``window`` places away (two
    branches of a module stored in the other order). What is left is listed
    as a difference: expected vs found where both sides have a layer there,
    missing or extra otherwise.
    """
    a = [layer.signature for layer in expected]
    b = [layer.signature for layer in found]
    matched, spare_a, free_b = {}, [], {}
    for block, (tag, i1, i2, j1, j2) in enumerate(difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()):
        if tag == "equal":
            matched.update({i1 + d: j1 + d for d in range(i2 - i1)})
        else:
            spare_a += [(i, j1 - i1, block) for i in range(i1, i2)]
            free_b.update({j: block for j in range(j1, j2)})
    reordered, unmatched = 0, []
    for i, offset, block in spare_a:
        near = [j for j in free_b if b[j] == a[i] and abs(j - i - offset) <= window]
        if near:
            j = min(near, key=lambda j: abs(j - i - offset))
            matched[i] = j
            del free_b[j]
            reordered += 1
        else:
            unmatched.append((i, block))
    differences = []
    for i, block in unmatched:
        j = next((j for j in sorted(free_b) if free_b[j] == block), None)
        expect = f"#{expected[i].position} {expected[i].name}: expected {_describe_signature(a[i])}"
        if j is None:
            differences.append((i, f"{expect}; missing from the file"))
        else:
            del free_b[j]
            differences.append((i, f"{expect}; found {found[j].name} (file layer {found[j].position}): "
                                   f"{_describe_signature(b[j])}"))
    differences += [(len(a) + j, f"extra in the file: {found[j].name} (file layer {found[j].position}): "
                                 f"{_describe_signature(b[j])}") for j in sorted(free_b)]
    pairs = [(expected[i], found[j]) for i, j in sorted(matched.items())]
    differences = [text for _, text in sorted(differences, key=lambda d: (d[0] >= len(a), d[0] if d[0] >= len(a)
                                                                           else expected[d[0]].position))]
    return pairs, differences, reordered


def _config_differences(pairs, config_layers):
    """Settings that shapes cannot show (strides, padding, epsilon, LeakyReLU slope) compared with the kit."""
    if not config_layers:
        return [], []
    from course_lib.density.model import LEAKY_SLOPE

    settings = {layer["config"]["name"]: layer for layer in config_layers}
    differences = []
    checks = {"Conv2D": ("strides", "padding", "dilation_rate", "data_format"), "BatchNormalization": ("epsilon",)}
    for kit, found in pairs:
        entry = settings.get(found.name, {}).get("config", {})
        kit_config = kit.config
        for key in checks.get(kit.kind, ()):
            if key in entry and _normal(entry[key]) != _normal(kit_config[key]):
                differences.append(f"{kit.name}: {key} {entry[key]} in the file ({found.name}), "
                                   f"{kit_config[key]} in the kit")
        if kit.kind == "Dense" and entry.get("activation") not in (None, "softmax", "linear"):
            differences.append(f"{kit.name}: activation {entry['activation']} in the file ({found.name}), "
                               "softmax in the kit")
    slopes = {float(layer["config"].get("alpha", layer["config"].get("negative_slope", 0)))
              for layer in config_layers if layer.get("class_name") == "LeakyReLU"}
    notes = []
    if slopes and any(abs(s - LEAKY_SLOPE) > 1e-6 for s in slopes):
        differences.append(f"LeakyReLU slopes {sorted(slopes)} in the file, {LEAKY_SLOPE} in the kit")
    elif not slopes:
        notes.append("the file's model_config has no LeakyReLU layers; activations were not compared")
    return differences, notes


def _normal(value):
    return tuple(value) if isinstance(value, list) else value


def _follow_branch_order(pairs, expected):
    """Without a graph, tell same-shaped shortcut and main-path layers apart by the file's branch order.

    A projection module's shortcut and expand layers have the same shapes in
    stages 1-2 (convolutions) and in every stage (batch norms), so only their
    order tells them apart. The pairs whose shapes differ (the convolutions
    of stages 3-4) show which branch the file lists first; the same-shaped
    pairs are matched the same way, and a note says so.
    """
    source = {kit.name: layer for kit, layer in pairs}
    signature = {layer.name: layer.signature for layer in expected}
    branches = [(name[:-len("_shortcut_conv")], part) for name in signature if name.endswith("_shortcut_conv")
                for part in ("conv", "bn")]
    if not all(f"{m}_{b}_{part}" in source for m, part in branches for b in ("shortcut", "expand")):
        return pairs, None
    twins = [(m, part) for m, part in branches if signature[f"{m}_shortcut_{part}"] == signature[f"{m}_expand_{part}"]]
    votes = {source[f"{m}_shortcut_{part}"].position < source[f"{m}_expand_{part}"].position
             for m, part in branches if (m, part) not in twins}
    shortcut_first = votes == {True}
    for m, part in twins:
        first, second = sorted((source[f"{m}_shortcut_{part}"], source[f"{m}_expand_{part}"]),
                               key=lambda layer: layer.position)
        source[f"{m}_shortcut_{part}"], source[f"{m}_expand_{part}"] = \
            (first, second) if shortcut_first else (second, first)
    names = ", ".join(f"{m}_{part}" for m, part in twins)
    if len(votes) == 1:
        told = (f"the file lists each module's {'shortcut' if shortcut_first else 'main path'} first, as the "
                "layers whose shapes differ show")
    else:
        told = "the layers whose shapes differ do not show one branch order; matched main path first"
    pairs = [(kit, source[kit.name]) for kit, _ in pairs]
    return pairs, f"no graph in the file: the same-shaped shortcut and main-path layers ({names}) were told " \
                  f"apart by order: {told}"


def load_keras2_weights(model, path):
    """Set ``model``'s weights from a Keras 2 ``.h5`` file of the INFN density ResNet.

    Returns a :class:`MappingReport`. Raises
    :class:`~course_lib.density.model.ArchitectureMismatchError` (a
    ``ValueError``) naming the file and every layer that differs, before any
    weight is changed.
    """
    found = read_keras2_h5(path)
    expected = _kit_layers(model)
    by_graph = bool(found.layers) and all(layer.depth is not None for layer in found.layers)
    notes = []
    if by_graph:
        pairs, differences, reordered = _align(_canonical(expected), _canonical(found.layers))
        method = "graph depth, kind and shapes"
    else:
        pairs, differences, reordered = _align(expected, found.layers)
        method = "order, kind and shapes"
        pairs, note = _follow_branch_order(pairs, expected)
        notes += [note] if note else []
    if reordered:
        notes.append(f"{reordered} layers were stored in another order than the kit's and were matched by "
                     "kind and shapes")
    setting_differences, setting_notes = _config_differences(pairs, found.config_layers) if not differences \
        else ([], [])
    differences += setting_differences
    notes += setting_notes
    if differences:
        shown = differences[:20] + ([f"... and {len(differences) - 20} more"] if len(differences) > 20 else [])
        raise ArchitectureMismatchError(
            f"{found.path}: not the INFN density ResNet ({found.describe()}; the kit's model has {len(expected)} "
            f"layers with weights). Layers that differ (kit position, kit layer, expected; found):\n  "
            + "\n  ".join(shown) + f"\n{_WHAT_TO_DO}")
    if found.input_shape and tuple(found.input_shape) != tuple(model.input_shape[1:]):
        notes.append(f"the file's model took {'x'.join(map(str, found.input_shape))} inputs and this one takes "
                     f"{'x'.join(map(str, model.input_shape[1:]))}: predictions are not the original's "
                     "(build_from_keras2_h5 builds the file's size)")
    order = {layer.name: i for i, layer in enumerate(expected)}
    rows = []
    for kit, source in sorted(pairs, key=lambda pair: order[pair[0].name]):
        arrays = dict(source.weights)
        target = model.get_layer(kit.name)
        target.set_weights([arrays[w.name].astype(w.dtype) for w in target.weights])
        rows.append((order[kit.name] + 1, kit.name, source.name, [a.shape for _, a in source.weights]))
    return MappingReport(found, tuple(model.input_shape[1:]), method, rows, notes)


def build_from_keras2_h5(path, input_size=None):
    """Build the kit's ResNet at the file's input size (or ``input_size``) and load the file into it.

    The size comes from the file's ``model_config``; a weights-only file
    stores none, so the original's 650 is used. Channels follow the first
    convolution's kernel. Returns ``(model, report)``.

    >>> from course_lib.density.keras2_weights import INFN_WEIGHTS_KEY, build_from_keras2_h5
    >>> from course_lib.data import fetch
    >>> model, report = build_from_keras2_h5(fetch(INFN_WEIGHTS_KEY))  # doctest: +SKIP
    """
    found = read_keras2_h5(path)
    convolutions = [layer for layer in found.layers if layer.kind == "Conv2D"]
    channels = int(dict(convolutions[0].weights)["kernel"].shape[2]) if convolutions else 3
    stored = found.input_shape
    if input_size is None:
        input_size = stored[0] if stored and stored[0] and stored[0] == stored[1] else INPUT_SIZE
    model = build_density_resnet(int(input_size), channels=channels)
    report = load_keras2_weights(model, path)
    if not stored:
        report.notes.append(f"a weights-only file stores no input size: built at {input_size}x{input_size}")
    return model, report


def load_published_infn_model(key=INFN_WEIGHTS_KEY, input_size=None):
    """The INFN's own CC_R model, from the registry; ``None`` (with the reason printed) when unavailable.

    For notebook 02's ``full`` profile: the file is taken from the cache,
    ``COURSE_DATA_MIRROR`` or the network, whichever has it; offline, the
    section is skipped with a one-line reason. Returns ``(model, report)``
    otherwise.
    """
    from course_lib.data import try_fetch

    path = try_fetch(key)
    if path is None:
        return None
    return build_from_keras2_h5(path, input_size)
