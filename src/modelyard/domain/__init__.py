"""Pure domain model: entities, references, rules and errors. No I/O here."""
