"""Splits (Amazon ML DataRearrangement): sequential, random with a seed, stratified, complements."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from onyxserve.training.datasource.record import create_datasource
from onyxserve.training.datasource.splits import Split, parse_split, select, split_datasource, split_frames
from onyxserve.training.errors import DatasourceError

from onyxserve.cli import main


def rearrangement(**splitting):
    return {"splitting": splitting}


def test_parse_accepts_amazon_ml_forms():
    s = parse_split(
        '{"splitting": {"percentBegin": 10, "percentEnd": 60, "strategy": "random",'
        ' "strategyParams": {"randomSeed": "abc"}}}'
    )
    assert s == Split(10.0, 60.0, "random", "abc", False, False)
    assert parse_split(
        rearrangement(percentEnd=70, strategy="random", randomSeed=7, complement=True, stratified=True)
    ) == Split(0.0, 70.0, "random", "7", True, True)
    assert parse_split(s.to_dict()) == s and s.complementary().complement


@pytest.mark.parametrize(
    "obj, key, message",
    [
        ("{bad", None, "not valid JSON"),
        ({"split": {}}, "splitting", 'expected {"splitting": {...}}'),
        (rearrangement(percentEnd=120), "splitting.percentEnd", "must be a number from 0 to 100"),
        (rearrangement(percentBegin="0"), "splitting.percentBegin", "must be a number"),
        (rearrangement(percentBegin=80, percentEnd=20), "splitting.percentBegin", "is after percentEnd"),
        (
            rearrangement(strategy="shuffle"),
            "splitting.strategy",
            "strategy must be 'sequential' or 'random'",
        ),
        (rearrangement(seed=1), "splitting.seed", "unknown field"),
        (rearrangement(complement="yes"), "splitting.complement", "must be true or false"),
        (rearrangement(stratified=True), "splitting.stratified", "stratified splits need strategy 'random'"),
        (rearrangement(strategyParams={"x": 1}), "splitting.strategyParams", "only randomSeed"),
    ],
)
def test_bad_rearrangements_name_the_key(obj, key, message):
    with pytest.raises(DatasourceError) as err:
        parse_split(obj)
    assert err.value.key == key and message in str(err.value)


def test_sequential_takes_the_range_and_its_complement_the_rest():
    train = select(parse_split(rearrangement(percentBegin=0, percentEnd=70)), 10)
    assert train.tolist() == [True] * 7 + [False] * 3
    rest = select(parse_split(rearrangement(percentBegin=0, percentEnd=70, complement=True)), 10)
    assert (rest == ~train).all()
    middle = select(parse_split(rearrangement(percentBegin=25, percentEnd=50)), 8)
    assert np.flatnonzero(middle).tolist() == [2, 3]


def test_random_is_seeded_disjoint_with_its_complement_and_chunk_independent():
    n = 20_000
    split = parse_split(rearrangement(percentEnd=70, strategy="random", randomSeed="s1"))
    a = select(split, n)
    assert (a == select(split, n)).all() and abs(a.mean() - 0.7) < 0.02
    assert (
        a != select(parse_split(rearrangement(percentEnd=70, strategy="random", randomSeed="s2")), n)
    ).any()
    assert (select(split.complementary(), n) == ~a).all()
    # adjacent ranges tile the rows
    parts = [
        select(
            parse_split(rearrangement(percentBegin=b, percentEnd=e, strategy="random", randomSeed="s1")), n
        )
        for b, e in [(0, 30), (30, 70), (70, 100)]
    ]
    assert (np.sum(parts, axis=0) == 1).all() and (parts[0] | parts[1] == a).all()
    frame = pd.DataFrame({"x": np.arange(n)})
    chunks = (frame.iloc[i : i + 999] for i in range(0, n, 999))
    taken = pd.concat(split_frames(chunks, split, n))
    assert taken["x"].tolist() == np.flatnonzero(a).tolist()


def test_stratified_keeps_each_class_share_exactly():
    n = 1000
    labels = pd.Series(np.where(np.arange(n) % 50 == 0, "fraud", "ok"))  # 20 frauds
    labels[7] = None  # a row without a label goes to neither side
    split = parse_split(rearrangement(percentEnd=70, strategy="random", randomSeed=3, stratified=True))
    train, test = select(split, n, labels), select(split.complementary(), n, labels)
    assert labels[train].value_counts().to_dict() == {"ok": 685, "fraud": 14}
    assert labels[test].value_counts().to_dict() == {"ok": 294, "fraud": 6}
    assert not (train & test).any() and not train[7] and not test[7]
    with pytest.raises(DatasourceError, match="needs the target's values"):
        select(split, n)


def test_split_a_datasource_and_the_cli(tmp_path, capsys):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=400), "label": np.where(np.arange(400) % 10 == 0, 1, 0)})
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    ds = create_datasource(path, target="label")
    split = rearrangement(percentEnd=80, strategy="random", randomSeed="k", stratified=True)
    train = pd.concat(split_datasource(ds, split, chunk_rows=64))
    assert len(train) == 320 and train["label"].sum() == 32
    assert np.allclose(train["x"], frame["x"][train.index])
    record = tmp_path / "d.json"
    ds.save(record)
    out = tmp_path / "test.csv"
    args = [
        "datasource",
        "split",
        str(record),
        "--out",
        str(out),
        "--rearrangement",
        (
            '{"splitting": {"percentEnd": 80, "strategy": "random", "randomSeed": "k", "stratified": true,'
            ' "complement": true}}'
        ),
    ]
    assert main(args) == 0
    assert "wrote 80 of 400 rows" in capsys.readouterr().out
    test = pd.read_csv(out)
    assert len(test) == 80 and test["label"].sum() == 8
    assert set(np.round(test["x"], 9)).isdisjoint(np.round(train["x"], 9))
    parquet = tmp_path / "train.parquet"
    assert (
        main(
            [
                "datasource",
                "split",
                str(record),
                "--out",
                str(parquet),
                "--rearrangement",
                '{"splitting": {"percentEnd": 50}}',
            ]
        )
        == 0
    )
    assert len(pd.read_parquet(parquet)) == 200
    assert (
        main(["datasource", "split", str(record), "--out", str(parquet), "--rearrangement", '{"x": 1}']) == 1
    )
    assert "key 'splitting'" in capsys.readouterr().err
    no_target = create_datasource(path)
    with pytest.raises(DatasourceError, match="needs a classification target"):
        split_datasource(no_target, split)
