"""Development helpers: stand-ins for services that only exist inside a real CI run.

Nothing here is used by signing or verification; a verifier trusts these only when it is
explicitly pointed at them.
"""
