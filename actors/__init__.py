"""Ray actors: thin shells around plain classes that tests use without Ray."""
