"""Text features: vectorizers exported into the ONNX graph, scores equal scikit-learn's.

The texts mix what tokenizers disagree on: non-ASCII letters and digits (Python's ``\\w`` is
Unicode, RE2's is ASCII), underscores, punctuation, uppercase that only ``str.lower`` folds the
way scikit-learn does, empty and missing values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from onyxserve.core.scorer import load_version
from onyxserve.training.export.parity import row_block
from onyxserve.training.export.writer import ExportError, export_model
from onyxserve.training.recipe.steps import TextCleaner
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

WORDS = [
    "refund", "Café", "naïve", "ÉCOLE", "foo_bar", "don't", "7up", "½", "日本語", "İstanbul",
    "wire-transfer", "gift!!", "CARD", "card", "ﬁne", "Straße", "x²", "…", "e\u0301t\u00e9",
]


def text_frame(rows: int = 240, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    notes = [" ".join(rng.choice(WORDS, rng.integers(0, 6))) for _ in range(rows)]
    notes[min(5, rows - 1)] = ""
    frame = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 30.0, rows),
            "note": notes,
            "merchant": rng.choice(["a", "b", "c"], rows),
        }
    )
    has_refund = frame["note"].str.lower().str.contains("refund|card")
    y_class = np.where(has_refund ^ (rng.random(rows) < 0.1), "fraud", "ok")
    y_value = frame["amount"].to_numpy() * 0.1 + has_refund.to_numpy() * 5.0
    return frame, y_class, y_value


def pipeline(vectorizer, estimator, text_in_middle: bool = True) -> Pipeline:
    parts = [
        ("num", StandardScaler(), ["amount"]),
        ("text", vectorizer, "note"),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["merchant"]),
    ]
    if not text_in_middle:
        parts = [parts[0], parts[2], parts[1]]
    return Pipeline([("prep", ColumnTransformer(parts, sparse_threshold=0.0)), ("model", estimator)])


def served(path, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    scorer = load_version(path, intra_op_threads=1)
    return scorer.score([row_block(scorer.manifest, frame)])


VECTORIZERS = {
    "tfidf_default": lambda: TfidfVectorizer(),
    "tfidf_1_2_grams": lambda: TfidfVectorizer(token_pattern=r"(?u)\b\w+\b", ngram_range=(1, 2)),
    "count_punct": lambda: CountVectorizer(token_pattern=r"(?u)\b\w+\b|[^\w\s]", lowercase=False),
    "count_binary_trigrams": lambda: CountVectorizer(binary=True, ngram_range=(1, 3), min_df=2),
    "cleaner_no_punct": lambda: Pipeline(
        [("clean", TextCleaner(lowercase=True, no_punct=True)),
         ("tfidf", TfidfVectorizer(lowercase=False, token_pattern=r"(?u)\b\w+\b", ngram_range=(1, 2)))]
    ),
    "cleaner_keep_punct": lambda: Pipeline(
        [("clean", TextCleaner(lowercase=True, no_punct=False)),
         ("count", CountVectorizer(lowercase=False, token_pattern=r"(?u)\b\w+\b|[^\w\s]", max_features=20))]
    ),
}


@pytest.mark.parametrize("name", list(VECTORIZERS))
@pytest.mark.parametrize("middle", [True, False], ids=["text-in-middle", "text-last"])
def test_text_classifier_scores_equal_sklearn(tmp_path, name, middle):
    frame, y, _ = text_frame()
    pipe = pipeline(VECTORIZERS[name](), LogisticRegression(max_iter=500), middle).fit(frame, y)
    result = export_model(pipe, name="t", repository=tmp_path, sample=frame, register=False)
    (text,) = [f for f in result.manifest.features if f.type == "text"]
    assert text.width == 0 and text.text.input_name == "text__note"
    assert result.manifest.model.input_width == 1 + 3  # amount + one-hot; the text is in the graph
    # a frame the export did not see, with unseen words and an empty note
    fresh, _, _ = text_frame(rows=60, seed=11)
    fresh.loc[0, "note"] = "UNSEEN words ÉCOLE"
    got = served(result.path, fresh)
    np.testing.assert_allclose(got["probabilities"], pipe.predict_proba(fresh), atol=1e-5, rtol=0)


def test_text_regression_and_text_only_model(tmp_path):
    frame, _, y = text_frame()
    pipe = pipeline(TfidfVectorizer(ngram_range=(1, 2)), Ridge()).fit(frame, y)
    result = export_model(pipe, name="r", repository=tmp_path, sample=frame, register=False)
    np.testing.assert_allclose(served(result.path, frame)["value"], pipe.predict(frame), rtol=1e-5, atol=1e-4)
    only = Pipeline([("prep", ColumnTransformer([("text", CountVectorizer(), "note")])), ("model", Ridge())])
    only.fit(frame[["note"]], y)
    result = export_model(only, name="only", repository=tmp_path, sample=frame[["note"]], register=False)
    assert result.manifest.model.input_width == 0
    np.testing.assert_allclose(served(result.path, frame[["note"]])["value"], only.predict(frame[["note"]]), rtol=1e-5, atol=1e-4)


def test_text_baseline_records_lengths(tmp_path):
    frame, y, _ = text_frame()
    pipe = pipeline(TfidfVectorizer(), LogisticRegression(max_iter=500)).fit(frame, y)
    result = export_model(pipe, name="t", repository=tmp_path, sample=frame, register=False)
    note = result.manifest.baseline["features"]["note"]
    assert note["type"] == "text"
    assert note["empty_rate"] == pytest.approx((frame["note"] == "").mean())
    assert note["length"]["count"] == len(frame)


@pytest.mark.parametrize(
    "vectorizer, message",
    [
        (TfidfVectorizer(stop_words="english"), "stop_words='english' is not supported"),
        (CountVectorizer(token_pattern=r"[a-z]+"), "token_pattern '[a-z]+' has no exact ONNX"),
        (CountVectorizer(analyzer="char"), "analyzer='char' is not supported"),
        (TfidfVectorizer(sublinear_tf=True), "sublinear_tf=True is not supported"),
    ],
)
def test_unsupported_vectorizer_settings_are_refused_by_name(tmp_path, vectorizer, message):
    frame, y, _ = text_frame()
    pipe = pipeline(vectorizer, LogisticRegression(max_iter=500)).fit(frame, y)
    with pytest.raises(ExportError, match="prep__text") as err:
        export_model(pipe, name="t", repository=tmp_path, sample=frame, register=False)
    assert message in str(err.value)
    assert not (tmp_path / "t").exists()


def test_text_column_scaled_after_vectorizing_is_refused(tmp_path):
    frame, y, _ = text_frame()
    text = Pipeline([("tfidf", TfidfVectorizer()), ("scale", StandardScaler(with_mean=False))])
    pipe = pipeline(text, LogisticRegression(max_iter=500)).fit(frame, y)
    with pytest.raises(ExportError, match="text feature 'note' as numbers"):
        export_model(pipe, name="t", repository=tmp_path, sample=frame, register=False)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_batch_prediction_of_a_text_model_equals_sklearn(tmp_path, suffix):
    from onyxserve.training.batch.predict import batch_predict

    frame, y, _ = text_frame()
    pipe = pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression(max_iter=500)).fit(frame, y)
    result = export_model(pipe, name="t", repository=tmp_path / "repo", sample=frame, register=False)
    source = tmp_path / f"in.{suffix}"
    fresh, _, _ = text_frame(rows=300, seed=8)
    fresh.to_csv(source, index=False) if suffix == "csv" else fresh.to_parquet(source, index=False)
    batch_predict(result.path, source, tmp_path / "out.parquet", chunk_rows=64, progress=False)
    out = pd.read_parquet(tmp_path / "out.parquet")
    # CSV reads the empty note back as missing: the server's "" and scikit-learn's "" agree
    expected = pipe.predict_proba(fresh.fillna({"note": ""}))
    np.testing.assert_allclose(out[["probability_fraud", "probability_ok"]].to_numpy(), expected, atol=1e-5, rtol=0)
