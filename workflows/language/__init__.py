"""The journey language: YAML in, a validated and compiled plan (or a list of problems) out."""

from workflows.language.compiler import ProjectContext
from workflows.language.problems import Problem
from workflows.language.validator import Report, compile_text, validate

__all__ = ["Problem", "ProjectContext", "Report", "compile_text", "validate"]
