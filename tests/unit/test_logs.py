"""app.logs: the log lines that say nothing about the run (TFX 1.21's ZetaSQL fallback) are dropped, others kept."""

import logging

from app.logs import drop_expected_noise


def test_the_zetasql_fallback_warning_is_dropped_and_other_absl_warnings_are_kept(caplog):
    drop_expected_noise()
    drop_expected_noise()  # installed once
    absl_logger = logging.getLogger("absl")
    assert sum(type(f).__name__ == "_DropExpectedNoise" for f in absl_logger.filters) == 1
    with caplog.at_level(logging.WARNING):
        absl_logger.warning("Fallback to non-ZetaSQL contexts execution query due to: %s",
                            "filter_query is not supported - ZetaSQL dependency removed")
        absl_logger.warning("Something else: %s", "kept")
    assert [r.getMessage() for r in caplog.records] == ["Something else: kept"]
