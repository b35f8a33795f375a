"""triton_repo"""
