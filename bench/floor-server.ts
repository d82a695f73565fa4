// bare-server.ts's routes and, under /api/v1/public, the contract's floor (lib/contract-floor.ts),
// in one process for bench/floor.ts: the two are compared on the same server.
import { addContractFloor, floorFastify } from './lib/contract-floor.ts'
import { addBareRoutes, serveBareProcess } from './lib/bare-routes.ts'

const app = floorFastify(process.env.LOG_LEVEL ?? 'warn')
await addContractFloor(app)
addBareRoutes(app)
await serveBareProcess(app)
