"""Text features inside the ONNX graph: a fitted word vectorizer per text feature, joined to the
estimator's graph.

The served graph takes the core's float32 matrix ``input`` ``[N, W]`` plus one string input
``[N, 1]`` per text feature. Each string input runs through skl2onnx's conversion of the fitted
CountVectorizer / TfidfVectorizer (Tokenizer -> n-grams -> counts -> idf -> norm); a Concat
(and, when the training pipeline interleaved text with other columns, a Gather) rebuilds the
column order the estimator was trained on.

Exactness: onnxruntime tokenizes with RE2, whose ``\\w`` is ASCII-only, while scikit-learn's
patterns use Python's Unicode ``\\w``; each supported pattern therefore maps to an RE2
expression over Unicode classes (``\\pL``, ``\\pN``) that yields the same tokens. Lowercasing
stays out of the graph (ONNX's StringNormalizer needs host locales and differs from
``str.lower``); the manifest tells the server to apply ``str.lower`` itself.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from onyxserve.training.errors import ExportError
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

VECTORIZERS = (CountVectorizer, TfidfVectorizer)  # TfidfVectorizer subclasses CountVectorizer

_WORD = r"\pL\pN_"  # Python's Unicode \w, as RE2 classes
_SPACE = r"\pZ\t\n\x0b\f\r\x1c-\x1f\x85"  # Python's Unicode \s
# (scikit-learn token_pattern, ASCII punctuation replaced by spaces first) -> RE2 expression
TOKEN_PATTERNS: dict[tuple[str, bool], str] = {
    (r"(?u)\b\w\w+\b", False): rf"[{_WORD}][{_WORD}]+",  # scikit-learn's default
    (r"(?u)\b\w+\b", False): rf"[{_WORD}]+",
    (r"(?u)\b\w+\b|[^\w\s]", False): rf"[{_WORD}]+|[^{_WORD}{_SPACE}]",
    # with punctuation removed, '_' (the one ASCII punctuation \w holds) splits words
    (r"(?u)\b\w\w+\b", True): r"[\pL\pN][\pL\pN]+",
    (r"(?u)\b\w+\b", True): r"[\pL\pN]+",
}


@dataclass(frozen=True, eq=False)
class TextPart:
    """One text feature's vectorizer, as the graph will run it."""

    feature: str
    vectorizer: Any  # fitted CountVectorizer / TfidfVectorizer
    lowercase: bool  # applied by the server before the graph
    tokenexp: str  # RE2 expression for onnxruntime's Tokenizer

    @property
    def width(self) -> int:
        return len(self.vectorizer.vocabulary_)

    @property
    def input_name(self) -> str:
        # skl2onnx rewrites input names to identifiers; choose one it keeps
        return "text__" + re.sub(r"[^A-Za-z0-9_]", "_", self.feature)


def text_part(vectorizer: Any, feature: str, lowercase: bool, no_punct: bool, where: str) -> TextPart:
    """Check that ``vectorizer`` can run in ONNX exactly; ExportError names the setting if not."""
    v = vectorizer
    unsupported = {
        "analyzer": (v.analyzer != "word", "only analyzer='word' is converted"),
        "tokenizer": (v.tokenizer is not None, "a Python tokenizer cannot run in ONNX"),
        "preprocessor": (v.preprocessor is not None, "a Python preprocessor cannot run in ONNX"),
        "stop_words": (v.stop_words is not None, "stop words would need ONNX's locale-dependent StringNormalizer"),
        "strip_accents": (v.strip_accents is not None, "accent stripping has no ONNX equivalent"),
    }
    for key, (bad, why) in unsupported.items():
        if bad:
            raise ExportError(f"step {where}: {key}={getattr(v, key)!r} is not supported: {why}")
    if isinstance(v, TfidfVectorizer) and v.sublinear_tf:
        raise ExportError(f"step {where}: sublinear_tf=True is not supported by the ONNX conversion")
    tokenexp = TOKEN_PATTERNS.get((v.token_pattern, no_punct))
    if tokenexp is None:
        known = sorted({p for p, _ in TOKEN_PATTERNS})
        raise ExportError(
            f"step {where}: token_pattern {v.token_pattern!r} has no exact ONNX (RE2) equivalent here; use one of {known}"
        )
    return TextPart(feature, v, lowercase=lowercase or bool(v.lowercase), tokenexp=tokenexp)


def add_text_inputs(
    estimator_model: Any,
    estimator_input: str,
    core_input: str,
    core_width: int,
    parts: Sequence[TextPart],
    order: Sequence[int],
    dtype: str = "float32",
) -> Any:
    """The served graph: ``estimator_model`` (input ``estimator_input``) fed by the core's
    ``dtype`` input and the text parts (cast to it). ``order[k]``: where estimator column ``k``
    sits in ``concat(core input, part 0, part 1, ...)``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    elem = TensorProto.DOUBLE if dtype == "float64" else TensorProto.FLOAT

    est = estimator_model
    opsets = {o.domain or "": o.version for o in est.opset_import}
    nodes, inits, inputs = [], [], []
    concat_in = [core_input]
    for i, part in enumerate(parts):
        sub = _convert_vectorizer(part, opsets)
        sub = onnx.compose.add_prefix(sub, f"text{i}_", rename_inputs=False, rename_outputs=True)
        nodes += sub.graph.node
        inits += sub.graph.initializer
        inputs += sub.graph.input
        out = sub.graph.output[0]
        name = out.name
        if out.type.tensor_type.elem_type != elem:
            nodes.append(helper.make_node("Cast", [name], [f"{name}_cast"], to=elem))
            name = f"{name}_cast"
        concat_in.append(name)
        for o in sub.opset_import:
            opsets[o.domain or ""] = max(opsets.get(o.domain or "", 0), o.version)
    identity = list(order) == list(range(len(order)))
    concat_out = estimator_input if identity else "text_concat"
    nodes.append(helper.make_node("Concat", concat_in, [concat_out], axis=1, name="text_concat"))
    if not identity:
        inits.append(numpy_helper.from_array(np.asarray(order, dtype=np.int64), "text_order"))
        nodes.append(helper.make_node("Gather", [concat_out, "text_order"], [estimator_input], axis=1))
    core = helper.make_tensor_value_info(core_input, elem, [None, core_width])
    graph = helper.make_graph(
        [*nodes, *est.graph.node],
        est.graph.name,
        [core, *inputs],
        list(est.graph.output),
        initializer=[*inits, *est.graph.initializer],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())]
    )
    model.ir_version = est.ir_version
    model.producer_name = est.producer_name
    onnx.checker.check_model(model)
    return model


def _convert_vectorizer(part: TextPart, opsets: dict[str, int]) -> Any:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType

    vec = copy.copy(part.vectorizer)
    vec.lowercase = False  # the server lowercases (see the module docstring)
    target = {d: v for d, v in opsets.items() if d in ("", "ai.onnx.ml")}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return convert_sklearn(
                vec,
                name=f"text-{part.feature}",
                initial_types=[(part.input_name, StringTensorType([None, 1]))],
                options={id(vec): {"tokenexp": part.tokenexp}},
                target_opset=target or None,
            )
    except Exception as exc:  # noqa: BLE001 -- skl2onnx raises many types
        raise ExportError(
            f"text feature '{part.feature}': skl2onnx cannot convert its {type(vec).__name__}: {exc}"
        ) from None
