"""User data (data=jsonl): every common format trains and scores; bad files are refused by line."""

from __future__ import annotations

import json

import pytest

from ftsweep.config import ConfigError, compose
from ftsweep.data.tasks import get_task
from ftsweep.data.tasks.user import identity
from ftsweep.data.tokenize import IGNORE_INDEX, prompt_text, tokenize_example

CAPITALS = [
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Kenya", "Nairobi"),
    ("Peru", "Lima"),
    ("Chile", "Santiago"),
    ("Egypt", "Cairo"),
    ("Norway", "Oslo"),
    ("Spain", "Madrid"),
    ("Italy", "Rome"),
    ("Cuba", "Havana"),
    ("Nepal", "Kathmandu"),
    ("Ghana", "Accra"),
]


def _record(fmt: str, country: str, capital: str) -> dict:
    if fmt == "messages":
        return {
            "messages": [
                {"role": "system", "content": "You answer geography questions."},
                {"role": "user", "content": f"What is the capital of {country}?"},
                {"role": "assistant", "content": capital},
            ]
        }
    if fmt == "alpaca":
        return {"instruction": "Name the capital city.", "input": country, "output": capital}
    if fmt == "prompt_completion":
        return {"prompt": f"Capital of {country}?", "completion": capital}
    return {"text": f"The capital of {country} is {capital}, a city many people visit every year."}


def _write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def _data(path, *extra):
    return compose(["data=jsonl", f"data.path={path}", *extra]).data


FORMATS = ["messages", "alpaca", "prompt_completion", "text"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_is_detected_and_split_by_seed(tmp_path, fmt):
    path = _write_jsonl(tmp_path / "d.jsonl", [_record(fmt, c, k) for c, k in CAPITALS])
    task = get_task(_data(path, "data.eval_fraction=0.25"))
    train, eval_set = task.split(100, 32, seed=0)
    assert task.format == fmt
    assert len(eval_set) == 3 and len(train) == 9
    assert task.split(100, 32, seed=0) == (train, eval_set)
    assert task.split(100, 32, seed=1) != (train, eval_set)
    if fmt == "text":
        # Eval continues the first half of a held-out text; none of those texts is trained on.
        assert all(ex.plain and ex.completion.startswith(" ") for ex in eval_set)
        for ex in eval_set:
            assert not any(ex.prompt in t.completion for t in train)
    else:
        assert not {identity(e) for e in eval_set} & {identity(t) for t in train}
        assert {ex.completion for ex in train} | {ex.completion for ex in eval_set} == {
            k for _, k in CAPITALS
        }


def test_num_eval_caps_the_held_out_share_and_num_train_the_rest(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [_record("alpaca", c, k) for c, k in CAPITALS])
    train, eval_set = get_task(_data(path, "data.eval_fraction=0.5")).split(4, 2, seed=0)
    assert (len(train), len(eval_set)) == (4, 2)


def test_duplicates_of_eval_examples_are_not_trained_on(tmp_path):
    records = [_record("prompt_completion", c, k) for c, k in CAPITALS] * 3
    path = _write_jsonl(tmp_path / "d.jsonl", records)
    task = get_task(_data(path, "data.eval_fraction=0.2"))
    train, eval_set = task.split(100, 32, seed=0)
    assert not {identity(e) for e in eval_set} & {identity(t) for t in train}
    assert task.dropped_overlap > 0


def test_chat_template_frames_the_conversation_and_masks_the_prompt(tmp_path):
    from transformers import AutoTokenizer

    from ftsweep.models.builtin import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("builtin:tiny-llama"))
    path = _write_jsonl(tmp_path / "d.jsonl", [_record("messages", c, k) for c, k in CAPITALS])
    train, _ = get_task(_data(path)).split(100, 32, seed=0)
    example = train[0]
    text = prompt_text(tokenizer, example)
    assert "You answer geography questions." in text and text.endswith("<|im_start|>assistant\n")
    item = tokenize_example(tokenizer, example, max_len=256)
    learned = [
        t
        for t, label in zip(item["input_ids"], item["labels"], strict=True)
        if label != IGNORE_INDEX
    ]
    prompt_len = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert item["labels"][:prompt_len] == [IGNORE_INDEX] * prompt_len
    assert tokenizer.decode(learned) == example.completion + "<|im_end|>"


def test_plain_text_is_trained_without_the_chat_template(tmp_path):
    from transformers import AutoTokenizer

    from ftsweep.models.builtin import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("builtin:tiny-llama"))
    path = _write_jsonl(tmp_path / "d.jsonl", [_record("text", c, k) for c, k in CAPITALS])
    train, _ = get_task(_data(path)).split(100, 32, seed=0)
    item = tokenize_example(tokenizer, train[0], max_len=256)
    assert "<|im_start|>" not in tokenizer.decode(item["input_ids"])
    assert IGNORE_INDEX not in item["labels"]


def test_long_prompts_keep_part_of_the_reply_to_learn():
    from transformers import AutoTokenizer

    from ftsweep.data.tasks import Example
    from ftsweep.models.builtin import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("builtin:tiny-llama"))
    example = Example(prompt="word " * 300, completion="the answer is here")
    item = tokenize_example(tokenizer, example, max_len=64)
    assert len(item["input_ids"]) == 64
    assert any(label != IGNORE_INDEX for label in item["labels"])
    assert tokenizer.decode(item["input_ids"]).endswith("the answer is here<|im_end|>")
    assert item["reply_cut"] is False  # the prompt lost its start, the reply is whole


def test_a_reply_cut_by_seq_len_is_warned_about(caplog):
    from transformers import AutoTokenizer

    from ftsweep.data.tasks import Example
    from ftsweep.data.tokenize import TokenizedDataset
    from ftsweep.models.builtin import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("builtin:tiny-llama"))
    short = Example(prompt="Capital of France?", completion="Paris")
    long = Example(prompt="Write a story.", completion="once upon a time " * 40)
    with caplog.at_level("WARNING", logger="ftsweep.data"):
        dataset = TokenizedDataset(tokenizer, [short, long, short], max_len=64)
    assert dataset.replies_cut == 1
    assert "train.seq_len=64 cuts the reply of 1 of 3 examples" in caplog.text
    assert all(set(item) == {"input_ids", "labels"} for item in dataset.items)
    caplog.clear()
    with caplog.at_level("WARNING", logger="ftsweep.data"):
        TokenizedDataset(tokenizer, [short, short], max_len=64)
    assert caplog.text == ""


def test_folder_with_train_and_eval_files_uses_the_given_split(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", [_record("alpaca", c, k) for c, k in CAPITALS[:9]])
    _write_jsonl(tmp_path / "validation.jsonl", [_record("alpaca", c, k) for c, k in CAPITALS[9:]])
    train, eval_set = get_task(_data(tmp_path)).split(100, 32, seed=0)
    assert [ex.completion for ex in eval_set] == [k for _, k in CAPITALS[9:]]
    assert len(train) == 9


def test_eval_path_and_json_list_file(tmp_path):
    (tmp_path / "train.json").write_text(
        json.dumps([_record("prompt_completion", c, k) for c, k in CAPITALS[:8]])
    )
    eval_path = _write_jsonl(
        tmp_path / "eval.jsonl", [_record("prompt_completion", c, k) for c, k in CAPITALS[8:]]
    )
    task = get_task(_data(tmp_path / "train.json", f"data.eval_path={eval_path}"))
    train, eval_set = task.split(100, 2, seed=0)
    assert len(train) == 8 and len(eval_set) == 2
    assert {ex.completion for ex in eval_set} <= {k for _, k in CAPITALS[8:]}


def _save_split(folder, records):
    """The layout `datasets.Dataset.save_to_disk` writes: Arrow stream files named in state.json."""
    import pyarrow as pa

    folder.mkdir(parents=True)
    table = pa.Table.from_pylist(records)
    with (
        pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink,
        pa.ipc.new_stream(sink, table.schema) as writer,
    ):
        writer.write_table(table)
    (folder / "state.json").write_text(
        json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]})
    )
    (folder / "dataset_info.json").write_text("{}")


def test_saved_hugging_face_dataset_folder(tmp_path):
    _save_split(tmp_path / "train", [_record("messages", c, k) for c, k in CAPITALS[:10]])
    _save_split(tmp_path / "test", [_record("messages", c, k) for c, k in CAPITALS[10:]])
    (tmp_path / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    task = get_task(_data(tmp_path))
    train, eval_set = task.split(100, 32, seed=0)
    assert task.format == "messages"
    assert len(train) == 10 and [ex.completion for ex in eval_set] == ["Kathmandu", "Accra"]


def test_parquet_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.Table.from_pylist([_record("text", c, k) for c, k in CAPITALS]), tmp_path / "d.parquet"
    )
    train, eval_set = get_task(_data(tmp_path / "d.parquet", "data.format=text")).split(
        100, 32, seed=0
    )
    assert len(train) + len(eval_set) == len(CAPITALS)


GOOD = json.dumps({"prompt": "a", "completion": "b"})
BAD_FILES = [
    (f'{GOOD}\n{{"prompt": "x", "completion": \n', ":2: not valid JSON"),
    (f"{GOOD}\n\n[1, 2]\n", ":3: expected a JSON object, got list"),
    (f'{GOOD}\n{{"prompt": "x"}}\n', ":2: missing key 'completion'"),
    (f'{GOOD}\n{{"prompt": "x", "completion": 5}}\n', ":2: 'completion' must be a string, got int"),
    (f'{GOOD}\n{{"prompt": "x", "completion": "  "}}\n', ":2: 'completion' is empty"),
    (
        '{"question": "a", "answer": "b"}\n',
        ":1: cannot tell the data format (keys: answer, question)",
    ),
    (
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]}\n',
        ":1: messages[1].role is 'bot'; allowed: system, user, assistant",
    ),
    (
        '{"messages": [{"role": "user", "content": "hi"}]}\n',
        ":1: the last message must be a non-empty assistant reply",
    ),
    (
        '{"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]}\n',
        ":1: no user message before the assistant reply",
    ),
    ('{"messages": "hello"}\n', ":1: 'messages' must be a non-empty list"),
    ("", ": no examples in it"),
]


@pytest.mark.parametrize(("content", "message"), BAD_FILES)
def test_malformed_data_is_refused_naming_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        get_task(_data(path)).split(10, 2, seed=0)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)
    # No chained exception: the message stands alone.
    assert caught.value.__context__ is None or caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("name", "content", "extra", "message"),
    [
        ("d.csv", "a,b\n", [], "unsupported file type '.csv'"),
        ("d.json", '{"prompt": "a"}', [], "expected a JSON list of examples, got dict"),
        (
            "d.json",
            '[{"prompt": "a", "completion": "b"},\n {"prompt": 1, "completion": "b"}]',
            [],
            "d.json item 2: 'prompt' must be a string, got int",
        ),
        ("d.json", '[{"prompt": "a",\n "completion": }]', [], "d.json:2: not valid JSON"),
        (
            "d.jsonl",
            '{"text": "a b c"}\n',
            ["data.format=alpaca"],
            "d.jsonl:1: missing key 'instruction' (format alpaca needs instruction, output)",
        ),
    ],
)
def test_malformed_files_of_other_kinds(tmp_path, name, content, extra, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        get_task(_data(path, *extra)).split(10, 2, seed=0)
    assert str(tmp_path) in str(caught.value)
    assert message in str(caught.value)


def test_missing_path_and_folder_without_train_split(tmp_path):
    with pytest.raises(ConfigError, match=r"data.path=.*nowhere.jsonl: no such file or folder"):
        get_task(_data(tmp_path / "nowhere.jsonl")).split(10, 2, seed=0)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ConfigError, match="no train file"):
        get_task(_data(tmp_path)).split(10, 2, seed=0)
    with pytest.raises(ConfigError, match="data.path is required for data=jsonl"):
        compose(["data=jsonl"])


def test_a_bad_file_is_one_line_from_the_cli(tmp_path, capsys):
    from ftsweep.cli import main

    path = tmp_path / "bad.jsonl"
    path.write_text(f'{GOOD}\n{{"prompt": "x", "completion": \n')
    code = main(
        ["train", "model=tiny-llama", f"results_dir={tmp_path}", "data=jsonl", f"data.path={path}"]
    )
    out = capsys.readouterr()
    text = out.out + out.err
    assert code != 0
    assert f"{path}:2: not valid JSON" in text
    assert "Traceback" not in text


@pytest.mark.parametrize("fmt", FORMATS)
def test_user_data_in_each_format_trains_and_scores(tmp_path, tiny_config, fmt):
    from ftsweep.trial.run import run_trial

    path = _write_jsonl(tmp_path / f"{fmt}.jsonl", [_record(fmt, c, k) for c, k in CAPITALS])
    cfg = tiny_config(
        "data=jsonl", f"data.path={path}", "data.eval_fraction=0.25", f"sweep.name=user-{fmt}"
    )
    metrics = run_trial(cfg).metrics
    assert 0.0 <= metrics["quality"] <= 1.0
    assert metrics["eval_loss"] > 0 and metrics["tokens_trained"] > 0


def test_without_a_chat_template_the_turns_are_plain_lines(tmp_path):
    from transformers import AutoTokenizer

    from ftsweep.data.tokenize import end_of_reply
    from ftsweep.models.builtin import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("builtin:tiny-llama"))
    tokenizer.chat_template = None
    path = _write_jsonl(tmp_path / "d.jsonl", [_record("messages", c, k) for c, k in CAPITALS])
    example = get_task(_data(path)).split(100, 32, seed=0)[0][0]
    assert prompt_text(tokenizer, example) == (
        f"You answer geography questions.\n{example.prompt}\n"
    )
    assert end_of_reply(tokenizer) == tokenizer.eos_token
