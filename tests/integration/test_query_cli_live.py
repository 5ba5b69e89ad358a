"""`arros query` as a subprocess: the config file names the archive; a missing archive folder is one line."""

from __future__ import annotations

from tests.support import arros_command
from tests.unit.test_query_cli import archive_dir  # noqa: F401 - the fixture: the archive the tests read


def test_config_file_names_the_archive(archive_dir, tmp_path):  # noqa: F811 - the fixture imported above
    config = tmp_path / "arros.toml"
    config.write_text(f'[archive]\ndir = "{archive_dir}"\n')
    result = arros_command("query", "SELECT count(*) AS n FROM telemetry", "-c", str(config), "--format", "csv")
    assert result.returncode == 0 and result.stdout.splitlines() == ['"n"', "900"]


def test_missing_archive_folder(tmp_path):
    result = arros_command("query", "SELECT 1", "--dir", str(tmp_path / "none"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"arros: error: archive folder '{tmp_path / 'none'}' does not exist "
                                     "(set [archive] dir with -c, or --dir)")
