"""What the plugin's parsers share: reading the JSON report every engine writes."""

from __future__ import annotations

import json

from aiida.parsers import Parser


class FerromlipParser(Parser):
    _abstract = True  # no entry point: only its subclasses are plugins

    def names(self) -> list[str]:
        return self.retrieved.base.repository.list_object_names()

    def read_json(self, filename: str):
        """``(content, None)`` for a retrieved JSON file, or ``(None, ERROR_OUTPUT_MISSING)`` when it is absent."""
        if filename not in self.names():
            return None, self.exit_codes.ERROR_OUTPUT_MISSING.format(filename=filename)
        return json.loads(self.retrieved.base.repository.get_object_content(filename)), None
