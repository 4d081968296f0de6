"""Personal data masked at the edge: names, phones and ID numbers as kioskd keeps them."""

from __future__ import annotations

import pytest

from kioskd.privacy import mask_name, mask_phone, scrub, scrub_text


@pytest.mark.parametrize("name, masked", [
    ("张三", "张*"), ("张三丰", "张**"), ("欧阳娜娜", "欧***"), ("李", "李"),
    ("  王五 ", "王*"), ("Wang Fang", "W********"), ("", None), (None, None)])
def test_a_name_keeps_only_its_first_character(name, masked):
    assert mask_name(name) == masked


@pytest.mark.parametrize("phone, masked", [
    ("13812345678", "138****5678"), ("+86 138-1234-5678", "138****5678"),
    ("8613812345678", "138****5678"), ("138****5678", "138****5678"),
    ("0951-6012345", "*******2345"), ("12", "**"), ("", None), (None, None)])
def test_a_phone_keeps_at_most_its_first_three_and_last_four_digits(phone, masked):
    assert mask_phone(phone) == masked


def test_free_text_loses_every_phone_and_id_number_but_keeps_ids_numbers_and_times():
    text = ("身份证 640102199001011234，旧证 640102900101123，手机13812345678，"
            "座机 0951-6012345；A012 号 3号窗口 09:45 票 AZrW13812345678x_64010219900101123X")
    scrubbed = scrub_text(text)
    for secret in ("199001011234", "900101123", "12345678", "6012345"):
        assert secret not in scrubbed.replace("AZrW13812345678x_64010219900101123X", "")
    assert "640102********1234" in scrubbed and "138****5678" in scrubbed
    assert "A012 号 3号窗口 09:45" in scrubbed
    assert "AZrW13812345678x_64010219900101123X" in scrubbed     # a ticket id is not a phone


def test_scrub_reaches_every_string_of_a_json_value():
    value = {"note": "回电 13812345678", "list": ["640102199001011234", 7, None]}
    assert scrub(value) == {"note": "回电 138****5678", "list": ["640102********1234", 7, None]}
