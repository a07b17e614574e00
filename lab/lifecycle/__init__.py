"""The lab's own life cycle: a whole lab brought up, found again and torn down (lab: Lab, LabError), which lab number
and /24 belongs to which lab (claims), the inventory file it writes for the kit (inventory: also the k3s and MetalLB
versions it runs) and the machine's packages it needs (packages). Modules here may import lab.hosts and lab.releases,
never the other way; lab.tasks and the tests import them."""
