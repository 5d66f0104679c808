"""Fixtures shared by the student runtime tests: one tiny random T5, exported once per module."""

from __future__ import annotations

import pytest

from models.student import Student
from tests.student_fixtures import TinyStudent, require_tiny_student


@pytest.fixture(scope="module")
def tiny() -> TinyStudent:
    return require_tiny_student()


@pytest.fixture(scope="module")
def student(tiny: TinyStudent) -> Student:
    return Student.load(tiny.onnx_dir, providers="CPUExecutionProvider", intra_op_threads=1)
