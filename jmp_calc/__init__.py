"""jmp_calc"""
