"""A local emulated Entra tenant (identity platform + the Microsoft Graph slice this product uses).

Built by the sandbox issue; never imports ``revoke_ops`` beyond its shared facts.
"""
