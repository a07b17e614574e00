"""Lab stand-in for the k3s binary (built into one executable zipapp by lab.releases.artifacts)."""
import os
import sys

from k3sstub.main import main

if __name__ == "__main__":
    sys.exit(main(os.path.basename(sys.argv[0]), sys.argv[1:]))
