"""Exit 0 when a pinned package of the lock (argv[1]) has another version in the freeze
(argv[2]), printing the differences; exit 1 when the lock matches what was installed."""
import sys


def pins(path):
    out = {}
    for line in open(path):
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[name.strip().lower().replace("_", "-")] = version.strip()
    return out


lock, installed = pins(sys.argv[1]), pins(sys.argv[2])
diff = {k: (v, installed[k]) for k, v in lock.items() if k in installed and installed[k] != v}
for name, (locked, newest) in sorted(diff.items()):
    print(f"lock differs: {name} {locked} (lock) vs {newest} (newest)")
sys.exit(0 if diff else 1)
