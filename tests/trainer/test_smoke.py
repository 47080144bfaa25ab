import json


def test_fast_spec_trains_a_servable_artifact(digits_artifact):
    card = json.loads((digits_artifact / "model.json").read_text())
    assert card["architecture"] == "tiny_cnn"
    assert card["classes"] == [str(i) for i in range(10)]
    assert card["metrics"]["accuracy"] >= 0.9
    assert (digits_artifact / "model.pt").is_file()
