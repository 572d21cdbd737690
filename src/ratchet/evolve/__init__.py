"""The harness tier (`ratchet evolve`, `ratchet test`): a project's harness improved by the loop."""
