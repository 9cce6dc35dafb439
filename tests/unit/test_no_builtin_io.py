"""Code that runs inside a component touches files only through tf.io.gfile / TFX fileio.

On Vertex AI or Kubeflow every artifact URI is gs://: builtin open and os fail
on it, and os.path mangles it (normpath and abspath turn "gs://b" into
"gs:/b"). This test parses the modules that run in a component's step (and
the report's readers) and fails on builtin open, os / os.path, shutil, glob,
pathlib, tempfile and numpy's file functions. tests/test_remote_paths.py runs
the same code on ram://, a non-local filesystem.
"""

import ast
import glob
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Run on the user's machine, never in a component: the download cache and the synthetic data generator.
NOT_IN_A_COMPONENT = {"movielens/download.py", "movielens/synthetic.py"}
EXTRA = ["app/results.py"]  # the report's readers: artifact URIs may be gs://

# os names that touch no file.
OS_PURE = {"os.getpid", "os.getenv", "os.environ", "os.cpu_count", "os.sep"}
FORBIDDEN_MODULES = ("os", "shutil", "glob", "pathlib", "tempfile")
FORBIDDEN_CALLS = {"open", "io.open", "codecs.open"} | {
    f"numpy.{name}" for name in
    ("load", "save", "savez", "savez_compressed", "loadtxt", "savetxt", "genfromtxt", "fromfile", "memmap")
}

# Justified exceptions, by module and function ("*": the whole module): every other use fails.
ALLOWED = {
    # The one dispatch point for the MovieLens reader's files: each function
    # sends a URI ("://": gs://, ram://, ...) to tf.io.gfile and only a local
    # path to os / open, so local reads need no TensorFlow (pipeline/ uses it
    # where the DAG is built). Every TensorFlow filesystem but the local one
    # has a scheme, so "://" is the right test. tests/test_remote_paths.py
    # reads a directory and a .zip on ram:// through it.
    ("movielens/files.py", "*"): {
        "open", "os.path.exists", "os.path.isdir", "os.path.join", "os.walk", "os.path.relpath",
        "os.listdir", "os.stat", "os.path.isfile", "os.path.abspath", "os.path.split", "os.makedirs",
        "shutil.rmtree",
    },
    # The warm-start sidecar's weights.npz is built and parsed in memory
    # (io.BytesIO); only its bytes go through tf.io.gfile.
    ("trainer/warm_start.py", "write_sidecar"): {"numpy.savez"},
    ("trainer/warm_start.py", "read_sidecar"): {"numpy.load"},
    # A non-chief worker's outputs go to a local temporary directory (its own
    # disk: nothing of it may reach the shared gs:// outputs), deleted after.
    ("trainer/distribute.py", "output_dirs"): {"tempfile.mkdtemp", "shutil.rmtree"},
    # ML Metadata's SQLite file is opened by the SQLite client, on the machine
    # running the report: a local path by nature.
    ("app/results.py", "metadata_store"): {"os.path.abspath"},
}


def component_modules():
    patterns = ["baselines/*.py", "components/*.py", "movielens/*.py", "retrieval/*.py", "trainer/*.py",
                "trainer/families/*.py", "transform/*.py"]
    found = sorted({os.path.relpath(p, REPO) for pattern in patterns for p in glob.glob(os.path.join(REPO, pattern))})
    return [m for m in found if m not in NOT_IN_A_COMPONENT] + EXTRA


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def local_file_access(source: str):
    """[(line, function, name)] of every use of builtin file access in `source`, names resolved through imports."""
    tree = ast.parse(source)
    aliases = {}  # local name -> what it names: "np" -> "numpy", "exists" -> "os.path.exists"
    inner = set()  # attribute chains' inner nodes: only the whole chain (os.path.exists) is checked
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Attribute):
            inner.add(id(node.value))

    def forbidden(name):
        module = name.split(".")[0]
        if name in FORBIDDEN_CALLS:
            return True
        if "." not in name:
            return False
        if module == "os":
            return not any(name == pure or name.startswith(pure + ".") for pure in OS_PURE)
        return module in FORBIDDEN_MODULES

    found = []

    def visit(node, function):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        if id(node) not in inner and isinstance(node, (ast.Attribute, ast.Name)) and isinstance(node.ctx, ast.Load):
            dotted = _dotted(node)
            if dotted is not None:
                head, _, rest = dotted.partition(".")
                name = aliases.get(head, head) + (f".{rest}" if rest else "")
                if forbidden(name):
                    found.append((node.lineno, function, name))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, "")
    return sorted(found)


def allowed(module: str, function: str, name: str) -> bool:
    return name in ALLOWED.get((module, "*"), set()) | ALLOWED.get((module, function), set())


def test_the_checker_finds_builtin_file_access():
    source = (
        "import os\nimport os.path as osp\nimport shutil\nimport numpy as np\nfrom os.path import exists\n"
        "from tensorflow.io import gfile\n"
        "open('a')\nos.makedirs('d')\nosp.exists('x')\nshutil.copy('a', 'b')\nexists('y')\n"
        "walk = os.walk\nnp.load('z')\nos.getpid()\nos.environ.get('HOME')\ngfile.exists('gs://b')\nf.open()\n"
    )
    assert [(line, name) for line, _, name in local_file_access(source)] == [
        (7, "open"), (8, "os.makedirs"), (9, "os.path.exists"), (10, "shutil.copy"), (11, "os.path.exists"),
        (12, "os.walk"), (13, "numpy.load"),
    ]
    assert local_file_access("import os\ndef f():\n    return os.path.abspath('x')\n") == [(3, "f", "os.path.abspath")]


def test_code_in_components_uses_only_gfile_or_fileio():
    problems = []
    for module in component_modules():
        with open(os.path.join(REPO, module)) as f:
            uses = local_file_access(f.read())
        problems += [f"{module}:{line}: {name}" for line, function, name in uses if not allowed(module, function, name)]
    assert not problems, "use tf.io.gfile / tfx.dsl.io.fileio (paths may be gs://):\n" + "\n".join(problems)


def test_the_modules_are_found_and_the_allowlist_is_still_needed():
    modules = component_modules()
    assert {"components/atomic_pusher.py", "components/data_gate.py", "trainer/task.py",
            "transform/preprocessing.py", "app/results.py"} <= set(modules)
    for (module, function), names in ALLOWED.items():
        with open(os.path.join(REPO, module)) as f:
            used = {name for _, in_function, name in local_file_access(f.read()) if function in ("*", in_function)}
        assert names <= used, f"{module} {function}: allowlisted but unused: {sorted(names - used)}"
