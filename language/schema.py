"""JSON Schemas of the authoring format and of ``touchpoint.yaml``, for editors and CI.

The example journeys point YAML language servers at ``schema/journey.schema.json`` with a
``# yaml-language-server: $schema=…`` line, which gives completion and checks while typing.
"""

from __future__ import annotations

from typing import Any

from config.project import ProjectConfig
from language.authoring import Journey

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def journey_schema() -> dict[str, Any]:
    schema = Journey.model_json_schema(by_alias=True)
    # "- end" alone is a step too: allow the bare string beside the {end: true} mapping.
    steps = schema["properties"]["steps"]["items"]
    steps["oneOf"] = [
        {"const": "end"} if v == {"$ref": "#/$defs/EndStep"} else v for v in steps["oneOf"]
    ]
    steps["oneOf"].append({"$ref": "#/$defs/EndStep"})
    return {
        "$schema": DIALECT,
        "$id": "https://touchpoint.dev/schema/journey.schema.json",
        **schema,
    }


def config_schema() -> dict[str, Any]:
    schema = ProjectConfig.model_json_schema(by_alias=True)
    return {
        "$schema": DIALECT,
        "$id": "https://touchpoint.dev/schema/touchpoint.schema.json",
        **schema,
    }
