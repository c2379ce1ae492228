print("vxswitchd: not yet built")
