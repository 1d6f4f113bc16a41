print("zerofs")
