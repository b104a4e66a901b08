"""Serializer helpers shared by the apps' APIs."""

from __future__ import annotations

import copy
from typing import Any

from rest_framework import serializers

_PROTOTYPES: dict[type, dict[str, serializers.Field[Any, Any, Any, Any]]] = {}


class FieldsBuiltOnceMixin:
    """For serializers on hot paths. DRF builds every field again for each serializer instance: a
    model serializer from the model (0.5 ms for an order, twelve times what rendering it takes),
    any serializer by deep-copying its declared fields. Here the fields are built once per class
    and each instance binds its own shallow copies (validators and choices are shared: they are
    read, never changed)."""

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        cls = type(self)
        prototypes = _PROTOTYPES.get(cls)
        if prototypes is None:
            prototypes = _PROTOTYPES[cls] = super().get_fields()  # type: ignore[misc]
        return {name: copy.copy(field) for name, field in prototypes.items()}
