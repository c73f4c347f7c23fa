"""The Harbor pluggable scanner adapter API: Dockyard serving it, and Dockyard using one."""
