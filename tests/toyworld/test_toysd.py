"""ToySD: its tokenizer, its diffusers folder, and what the committed weights generate (read by the classifier)."""

from hifilight.toyworld.toysd import MAX_LENGTH, toy_tokenizer, vocabulary_words


def test_every_toyworld_word_is_one_token_and_other_words_still_tokenize():
    tok = toy_tokenizer()
    for word in vocabulary_words():
        assert tok.tokenize(word) == [word + "</w>"], word
    caption = "a blue star with yellow dots in front of a brick wall"
    assert len(tok(caption).input_ids) == len(caption.split()) + 2  # + BOS/EOS
    assert "".join(tok.tokenize("dog")).replace("</w>", "") == "dog"  # falls back to smaller pieces
    # HiFi Tuner's n=5 rows go after the caption: the longest ToyWorld caption leaves room for them
    assert len(caption.split()) + 2 + 5 <= MAX_LENGTH
