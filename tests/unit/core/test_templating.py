import pytest

from batchspawner.core.templating import format_template, has_control_chars, load_template


@pytest.mark.parametrize(
    "template, expected",
    [
        ("#SBATCH --mem={memory}\n{cmd}", "#SBATCH --mem=4G\nrun"),
        ("{% if memory %}#SBATCH --mem={{ memory }}\n{% endif %}{{ cmd }}", "#SBATCH --mem=4G\nrun"),
        ("{% if queue %}#PBS -q {{ queue }}\n{% endif %}{{ cmd }}", "run"),
    ],
    ids=["str.format", "jinja", "jinja-empty-value-no-directive"],
)
def test_format_template(template, expected):
    assert format_template(template, memory="4G", cmd="run", queue="") == expected


@pytest.mark.parametrize(
    "value, bad",
    [("gpu", False), ("a\n#SBATCH --x", True), ("a\rb", True), ("tab\tok", False), ("nul\x00", True)],
    ids=["plain", "newline", "carriage-return", "tab", "nul"],
)
def test_control_chars(value, bad):
    assert has_control_chars(value) is bad


def test_slurm_template_ships_as_package_data():
    assert "#SBATCH --export={{ keepvars }}" in load_template("slurm.sh")
