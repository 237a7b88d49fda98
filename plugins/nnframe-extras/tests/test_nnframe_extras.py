import json
import subprocess
import sys

NAMES = ["leaky_relu", "softplus", "silu", "gelu", "softsign"]


def test_names_resolve_through_entry_points_in_a_fresh_interpreter():
    code = (
        "import sys, json, nnframe\n"
        "assert 'nnframe_extras' not in sys.modules\n"
        f"names = {NAMES!r}\n"
        "out = {}\n"
        "for n in names:\n"
        "    e = nnframe.registry.activation_entry(n)\n"
        "    out[n] = [e.provider.distribution, e.provider.plugin, type(e.obj).__module__]\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    for name in NAMES:
        assert found[name] == ["nnframe-extras", "extras", "nnframe_extras"]
