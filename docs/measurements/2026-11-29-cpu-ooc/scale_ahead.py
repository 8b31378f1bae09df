import json, os, sys
from batchfeed.outofcore_scale import scale_experiment, format_scale
from batchfeed.machine import storage_name
print(f"scale_experiment('/tmp', gib=1.25, budget=256 MiB, methods=('mini-batch',), ahead=((0,1),(4,1),(4,2)) x 2 rounds); "
      f"files on {storage_name('/tmp')}; load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
runs = scale_experiment("/tmp", gib=1.25, methods=("mini-batch",), ahead=((0, 1), (4, 1), (4, 2)) * 2)
print(format_scale(runs), end="")
print(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
json.dump([r.to_dict() for r in runs], open(sys.argv[1], "w"), indent=2)
