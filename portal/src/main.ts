import "./style.css";
import { route, start } from "./app";
import { loginPage } from "./pages/login";
import { fleetPage } from "./pages/fleet";
import { gatewayPage } from "./pages/gateway";
import { devicePage } from "./pages/device";
import { commandsPage, commandPage } from "./pages/commands";

route("/login", loginPage, true);
route("/", fleetPage);
route("/gateways/:id", gatewayPage);
route("/gateways/:id/commands", commandsPage);
route("/devices/:id", devicePage);
route("/commands/:id", commandPage);
start();
