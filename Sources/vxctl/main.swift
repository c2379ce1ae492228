print("vxctl: not yet built")
