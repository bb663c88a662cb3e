"""A model with a text feature, served: Triton's client sends the text as BYTES, scores equal
scikit-learn's; bad text is refused naming the feature and row while the server keeps serving."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as triton
from onyxserve.protos import v2bytes
from onyxserve.training.export.writer import export_model
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from tritonclient.utils import InferenceServerException

from tests.server.rest.test_http import post
from tests.serving import ServerProcess, triton_feature_inputs
from tests.training.export.test_export_text import pipeline, text_frame


@pytest.fixture(scope="module")
def text_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("text") / "models"
    frame, y, _ = text_frame()
    pipe = pipeline(TfidfVectorizer(token_pattern=r"(?u)\b\w+\b", ngram_range=(1, 2)), LogisticRegression(max_iter=500))
    pipe.fit(frame, y)
    export_model(pipe, name="notes", repository=repo, sample=frame)
    with ServerProcess(repo, args=["--model-control", "none"]) as server:
        client = triton.InferenceServerClient(server.grpc_target)
        yield client, pipe, server
        client.close()


def test_served_text_scores_equal_sklearn(text_server):
    client, pipe, _ = text_server
    frame, _, _ = text_frame(rows=50, seed=21)
    frame.loc[3, "note"] = "Completely UNSEEN vocabulary — ÉCOLE"
    result = client.infer("notes", triton_feature_inputs(frame))
    np.testing.assert_allclose(result.as_numpy("probabilities"), pipe.predict_proba(frame), atol=1e-5, rtol=0)


def test_metadata_lists_the_text_input_as_bytes(text_server):
    client, _, _ = text_server
    inputs = {i.name: i.datatype for i in client.get_model_metadata("notes").inputs}
    assert inputs == {"amount": "FP64", "note": "BYTES", "merchant": "BYTES"}


def _raw_request(frame, note_buffer: bytes) -> list:
    inputs = triton_feature_inputs(frame.drop(columns=["note"]))
    note = triton.InferInput("note", [len(frame)], "BYTES")
    note._raw_content = note_buffer  # what a non-Python client could send
    return [*inputs, note]


def test_invalid_utf8_names_feature_and_row_and_server_keeps_serving(text_server):
    client, pipe, _ = text_server
    frame, _, _ = text_frame(rows=3, seed=2)
    bad = v2bytes.encode([b"fine", b"ok", b"caf\xe9"])  # latin-1, not UTF-8
    with pytest.raises(InferenceServerException) as err:
        client.infer("notes", _raw_request(frame, bad))
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "feature 'note' row 2" in err.value.message() and "UTF-8" in err.value.message()
    result = client.infer("notes", triton_feature_inputs(frame))
    np.testing.assert_allclose(result.as_numpy("probabilities"), pipe.predict_proba(frame), atol=1e-5, rtol=0)


def test_text_sent_as_numbers_is_refused(text_server):
    client, _, _ = text_server
    frame, _, _ = text_frame(rows=2, seed=2)
    inputs = triton_feature_inputs(frame.drop(columns=["note"]))
    note = triton.InferInput("note", [2], "FP32")
    note.set_data_from_numpy(np.zeros(2, dtype=np.float32))
    with pytest.raises(InferenceServerException) as err:
        client.infer("notes", [*inputs, note])
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "input 'note': text feature, expected BYTES, got FP32" in err.value.message()


def test_rest_infer_takes_text_as_json_strings(text_server):
    _, pipe, server = text_server
    frame, _, _ = text_frame(rows=6, seed=4)
    frame.loc[0, "note"] = "Straße ÉCOLE naïve — refund"
    body = {
        "inputs": [
            {"name": c, "datatype": "FP64" if c == "amount" else "BYTES", "shape": [6], "data": frame[c].tolist()}
            for c in frame.columns
        ]
    }
    status, answer = post(f"{server.http_url}/v2/models/notes/infer", body)
    assert status == 200, answer
    proba = next(o for o in answer["outputs"] if o["name"] == "probabilities")
    np.testing.assert_allclose(np.reshape(proba["data"], (6, 2)), pipe.predict_proba(frame), atol=1e-5, rtol=0)


def test_model_config_and_rest_metadata_say_how_to_send_missing_values(text_server):
    import json
    import urllib.request

    client, _, server = text_server
    params = client.get_model_config("notes").config.parameters
    assert params["missing_fp64"].string_value == "NaN (null in REST JSON)"
    assert params["missing_bytes"].string_value == 'the empty string ""'
    with urllib.request.urlopen(f"{server.http_url}/v2/models/notes", timeout=10) as response:
        inputs = {i["name"]: i for i in json.load(response)["inputs"]}
    assert inputs["amount"]["parameters"]["missing"].startswith("NaN")
    assert inputs["note"]["parameters"]["missing"] == 'the empty string ""'
    assert {i["datatype"] for i in inputs.values()} == {"FP64", "BYTES"}
