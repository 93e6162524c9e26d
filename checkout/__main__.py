from cartlib.web import run

if __name__ == "__main__":
    run("checkout.app:create_app", default_port=8002)
