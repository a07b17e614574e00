"""Where an environment's resources go: resource group, region and the tags every resource carries."""
from dataclasses import dataclass

import pulumi


@dataclass(frozen=True)
class Placement:
    resource_group: pulumi.Input[str]
    location: str
    tags: dict[str, str]

    def args(self) -> dict:
        """The keyword arguments every regional, taggable Azure resource takes."""
        return {"resource_group_name": self.resource_group, "location": self.location, "tags": self.tags}
